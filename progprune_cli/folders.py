"""Run-folder names: the `progprune_uid` resolver conf/config.yaml's hydra.run.dir and hydra.sweep.dir use."""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

# Unique per process: two runs started in the same second still get two folders. Under torchrun only rank 0's
# folder name counts (the others get a scratch folder, then rank 0's path by broadcast; see app.train_task): the
# ranks' clocks may tick to another second between them, so a shared uid alone would not make ${now:...} agree.
UID = f"{os.getpid()}{secrets.token_hex(1)}"
# use_cache: a launcher that rebuilds the config in a worker process must get the same sweep folder name.
OmegaConf.register_new_resolver("progprune_uid", lambda: UID, replace=True, use_cache=True)
