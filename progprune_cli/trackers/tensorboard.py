"""`logger=tensorboard`: event files under the run folder (RUN_DIR/tensorboard/), written with torch's
SummaryWriter: every metrics.csv row at its optimizer step, the final figures, the plots and the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from progprune_cli.config.schema import TrackerConfig
from progprune_cli.trackers.base import TRACKERS, MetricRow, RunFinished, RunStarted, Tracker


@dataclass
class TensorBoardConfig(TrackerConfig):
    dir: str = MISSING  # the event files' folder, inside the run folder
    flush_secs: int = MISSING  # written to disk at least this often
    images: bool = MISSING  # the run's plots as images too


@TRACKERS.register("tensorboard", TensorBoardConfig)
class TensorBoard(Tracker):
    """Scalars under `<stage>/<event>/<column>` (step: the run's optimizer step) and `final/<model>/<figure>`; the
    config as text and as hparams (with the final figures as the hparams' metrics)."""

    package = "tensorboard"
    cfg: TensorBoardConfig

    def start(self, run: RunStarted) -> None:
        self.require("logger=tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.params = run.run_dir, run.params
        self.writer: Any = SummaryWriter(log_dir=str(run.run_dir / self.cfg.dir), flush_secs=self.cfg.flush_secs)
        # Markdown: indented lines show as code, one key per line.
        self.writer.add_text("config", "\n".join(f"    {key}: {value}" for key, value in run.params.items()))

    def rows(self, rows: list[MetricRow]) -> None:
        for row in rows:
            for tag, value in row.metrics().items():
                self.writer.add_scalar(tag, value, row.iteration)

    def finish(self, run: RunFinished) -> None:
        from torch.utils.tensorboard.summary import hparams

        figures = {f"final/{name}": value for name, value in run.figures.items()}
        for tag, value in figures.items():
            self.writer.add_scalar(tag, value, 0)
        if self.cfg.images:
            from matplotlib.image import imread

            for plot in run.plots:
                self.writer.add_image(f"plots/{plot.stem}", imread(self.run_dir / plot)[..., :3], 0,
                                      dataformats="HWC")
        # add_hparams would open a second writer in a subfolder; these are the summaries it writes, in this one.
        for summary in hparams(self.params, figures):
            self.writer.file_writer.add_summary(summary)

    def close(self, status: str) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
