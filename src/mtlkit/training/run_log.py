"""Per-epoch logs of a run: a CSV file and TensorBoard scalars, written by the main process."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from mtlkit.atomic import write_text_atomic
from mtlkit.measure.records import EpochRecord


class RunLog:
    """Appends each epoch to ``<run>/log.csv`` and to TensorBoard events under ``<run>/tb``.

    TensorBoard is the standard viewer for training curves (``tensorboard --logdir runs``); the
    CSV is there for scripts and spreadsheets.

    A resumed run passes the ``history`` its checkpoint holds: the CSV is rewritten with exactly
    those epochs and TensorBoard events of later epochs (logged before a crash, then lost with
    the state) are purged, so the logs show each epoch once.
    """

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = True,
        history: Sequence[EpochRecord] = (),
    ) -> None:
        self.csv_path = Path(run_dir) / "log.csv"
        self._columns: list[str] | None = None
        self._writer = None
        if history:
            self._columns = list(history[0].flat())
            text = io.StringIO(newline="")
            writer = csv.writer(text)
            writer.writerow(self._columns)
            writer.writerows(self._row(record) for record in history)
            write_text_atomic(self.csv_path, text.getvalue())
        else:
            self.csv_path.unlink(missing_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                log_dir=str(Path(run_dir) / "tb"), purge_step=len(history) + 1
            )

    def _row(self, record: EpochRecord) -> list:
        row = record.flat()
        return ["" if row.get(c) is None else row.get(c) for c in self._columns or []]

    def write(self, record: EpochRecord) -> None:
        """Log one epoch."""
        row = record.flat()
        if self._columns is None:
            self._columns = list(row)
            with self.csv_path.open("w", newline="") as file:
                csv.writer(file).writerow(self._columns)
        with self.csv_path.open("a", newline="") as file:
            csv.writer(file).writerow(self._row(record))
        if self._writer is not None:
            for key, value in row.items():
                if key != "epoch" and value is not None:
                    self._writer.add_scalar(key, value, record.epoch)
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
