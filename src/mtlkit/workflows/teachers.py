"""The distillation teachers a configuration names: an average of the student (``ema``) or
earlier runs (a run folder, or a ``mtlkit baselines`` folder whose ``single-<task>`` run teaches
each task)."""

from __future__ import annotations

from pathlib import Path

from mtlkit.config import ConfigError, ExperimentConfig
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import ClassificationTask, Task
from mtlkit.training import EMATeacher, FrozenTeachers, Teacher
from mtlkit.workflows.restore import restore_run
from mtlkit.workflows.run_dir import RunDir


def teacher_folder(source: str | Path, task: str) -> Path:
    """The run folder that teaches ``task``: ``<source>/single-<task>`` when ``source`` is a
    ``mtlkit baselines`` folder, else ``source`` itself.

    Raises:
        ConfigError: neither is a run folder.
    """
    source = Path(source)
    for folder in (source / f"single-{task}", source):
        if RunDir(folder).config.is_file():
            return folder
    raise ConfigError(
        f"tasks.{task}.distill.teacher: {source} is neither a run folder nor a `mtlkit baselines` "
        f"folder with a single-{task} run; train the teacher first (mtlkit baselines CONFIG OUT)."
    )


def build_teachers(
    config: ExperimentConfig, tasks: list[Task], student: MultiTaskModel
) -> list[Teacher]:
    """The teachers of the classification tasks whose ``distill.teacher`` is set."""
    sources: dict[str, list[str]] = {}
    for task in tasks:
        teacher = config.tasks.techniques(task.name)["distill"].teacher
        if teacher is not None and isinstance(task, ClassificationTask):
            sources.setdefault(teacher, []).append(task.name)
    teachers: list[Teacher] = []
    averaged = sources.pop("ema", None)
    if averaged:
        teachers.append(EMATeacher(student, averaged, config.tasks.distill.ema_decay))
    models: dict[str, MultiTaskModel] = {}
    loaded: dict[Path, MultiTaskModel] = {}
    for source, names in sources.items():
        for name in names:
            folder = teacher_folder(source, name)
            if folder not in loaded:
                loaded[folder] = restore_run(folder, "cpu").model
            models[name] = loaded[folder]
    if models:
        try:
            teachers.append(FrozenTeachers(models))
        except ValueError as error:
            raise ConfigError(f"tasks.distill.teacher: {error}") from None
    return teachers
