"""Every component registered, and so each YAML's schema stored in Hydra's ConfigStore: imported before a config
is composed or typed (the Hydra apps, the pre-run check, a run folder read back)."""

import progprune_cli.data  # noqa: F401
import progprune_cli.models  # noqa: F401
import progprune_cli.optim.lr_schedulers  # noqa: F401
import progprune_cli.optim.optimizers  # noqa: F401
import progprune_cli.pruning.schedules  # noqa: F401
import progprune_cli.pruning.strategies  # noqa: F401
import progprune_cli.trackers  # noqa: F401
