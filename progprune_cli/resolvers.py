"""The OmegaConf resolvers conf/config.yaml uses: `progprune_uid` in run-folder names, `progprune_groups` in
`progprune train --help` (the choices of each group: its YAMLs, not the schemas stored beside them)."""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

from progprune_cli.config.groups import group_options

# Unique per process: two runs started in the same second still get two folders. Under torchrun only rank 0's
# folder name counts (the others get a scratch folder, then rank 0's path by broadcast; see app.train): the
# ranks' clocks may tick to another second between them, so a shared uid alone would not make ${now:...} agree.
UID = f"{os.getpid()}{secrets.token_hex(1)}"
# use_cache: a launcher that rebuilds the config in a worker process must get the same sweep folder name.
OmegaConf.register_new_resolver("progprune_uid", lambda: UID, replace=True, use_cache=True)
OmegaConf.register_new_resolver(
    "progprune_groups", lambda: "\n".join(f"{group}: {', '.join(names)}" for group, names in group_options().items()),
    replace=True)
