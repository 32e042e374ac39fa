"""Downloads of missing MNIST files, against HTTP servers on 127.0.0.1 only."""

import hashlib
import http.server
import shutil
import socket
import threading
from dataclasses import replace
from functools import partial

import pytest

from handgrad.data import datasets
from handgrad.data.idx import read_idx
from handgrad.errors import DataError

LABEL_FILES = ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
IMAGE_FILES = ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]


@pytest.fixture(autouse=True)
def isolated_lookup(tmp_path, monkeypatch):
    """A private cache, no $HANDGRAD_DATA, and no mirror unless a test names one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HANDGRAD_DATA", raising=False)
    monkeypatch.setenv("HANDGRAD_MIRROR", f"http://127.0.0.1:{closed_port()}/")


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = None  # a list, set per server, recording the paths asked for

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


class TruncatingHandler(QuietHandler):
    """Promises the whole file, sends half of it, and hangs up."""

    def do_GET(self):
        self.requests.append(self.path)
        data = (self.directory_path / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])


@pytest.fixture
def serve(tmp_path):
    """``serve(folder, handler=QuietHandler)`` -> (base URL, list of requested paths)."""
    servers = []

    def start(folder, handler=QuietHandler):
        requests = []
        cls = type("Handler", (handler,), {"requests": requests, "directory_path": folder})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(cls, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror_folder(tmp_path, shared_data):
    """A folder laid out like a mirror: ``mnist/`` with copies of the two label files."""
    folder = tmp_path / "mirror"
    (folder / "mnist").mkdir(parents=True)
    for name in LABEL_FILES:
        shutil.copy(shared_data / "mnist" / name, folder / "mnist" / name)
    return folder


@pytest.fixture
def images_in_data_dir(tmp_path, shared_data):
    """A data_dir holding only the two MNIST image files (as links to the shared copies)."""
    data_dir = tmp_path / "data"
    (data_dir / "mnist").mkdir(parents=True)
    for name in IMAGE_FILES:
        (data_dir / "mnist" / name).symlink_to(shared_data / "mnist" / name)
    return data_dir


def cache_folder(tmp_path):
    return tmp_path / "cache" / "handgrad" / "mnist"


def test_missing_files_are_downloaded_verified_and_cached(tmp_path, serve, mirror_folder, images_in_data_dir, shared_data):
    url, requests = serve(mirror_folder)
    found = datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url)
    assert sorted(requests) == sorted(f"/mnist/{name}" for name in LABEL_FILES)
    for name in LABEL_FILES:
        cached = cache_folder(tmp_path) / name
        assert cached.read_bytes() == (shared_data / "mnist" / name).read_bytes()
    assert found["train_labels"] == cache_folder(tmp_path) / "train-labels-idx1-ubyte.gz"
    assert found["train_images"].parent == images_in_data_dir / "mnist"
    assert sorted(p.name for p in cache_folder(tmp_path).iterdir()) == sorted(LABEL_FILES)
    # A second lookup finds everything and asks the server for nothing.
    datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url)
    assert len(requests) == 2


def test_real_image_file_downloads_and_reads(tmp_path, serve, shared_data):
    folder = tmp_path / "mirror" / "mnist"
    folder.mkdir(parents=True)
    shutil.copy(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", folder)
    url, _ = serve(tmp_path / "mirror")
    sha = datasets.DATASETS["mnist"].files["test_images"][1]
    path = datasets.download(url + "mnist/t10k-images-idx3-ubyte.gz", tmp_path / "out" / "t10k.gz", sha)
    assert read_idx(path).shape == (10000, 28, 28)


def test_mirror_comes_from_the_environment(tmp_path, serve, mirror_folder, images_in_data_dir, monkeypatch):
    url, requests = serve(mirror_folder)
    monkeypatch.setenv("HANDGRAD_MIRROR", url)
    datasets.locate("mnist", data_dir=images_in_data_dir)
    assert len(requests) == 2


def test_corrupt_download_is_rejected_and_not_cached(tmp_path, serve, mirror_folder, images_in_data_dir):
    corrupt = mirror_folder / "mnist" / "train-labels-idx1-ubyte.gz"
    data = bytearray(corrupt.read_bytes())
    data[100] ^= 0x01
    corrupt.write_bytes(bytes(data))
    url, _ = serve(mirror_folder)
    expected = datasets.DATASETS["mnist"].files["train_labels"][1]
    with pytest.raises(DataError) as info:
        datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz" in message and expected in message
    actual = message.split("has sha256 ")[1].split()[0]
    assert len(actual) == 64 and actual != expected
    cached = list(cache_folder(tmp_path).iterdir()) if cache_folder(tmp_path).exists() else []
    assert "train-labels-idx1-ubyte.gz" not in [p.name for p in cached]
    assert not [p for p in cached if p.name.startswith(".")]          # no temporary file left behind


def test_failed_download_leaves_an_existing_file_untouched(tmp_path, serve, mirror_folder):
    corrupt = mirror_folder / "mnist" / "t10k-labels-idx1-ubyte.gz"
    corrupt.write_bytes(b"not the labels")
    url, _ = serve(mirror_folder)
    destination = tmp_path / "keep" / "t10k-labels-idx1-ubyte.gz"
    destination.parent.mkdir()
    destination.write_bytes(b"previous content")
    with pytest.raises(DataError, match="sha256"):
        datasets.download(url + "mnist/t10k-labels-idx1-ubyte.gz", destination, "0" * 64)
    assert destination.read_bytes() == b"previous content"
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]


def test_download_cut_off_midway_leaves_no_file(tmp_path, serve, mirror_folder, images_in_data_dir):
    url, requests = serve(mirror_folder, handler=TruncatingHandler)
    with pytest.raises(DataError):
        datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url)
    assert requests
    leftovers = list(cache_folder(tmp_path).iterdir()) if cache_folder(tmp_path).exists() else []
    assert leftovers == []


def assert_lists_missing_files(message, tmp_path, data_dir):
    for name in LABEL_FILES:
        assert name in message
    for name in IMAGE_FILES:
        assert name not in message
    assert str(data_dir / "mnist") in message and str(cache_folder(tmp_path)) in message


def test_server_answering_404_gives_missing_files_error(tmp_path, serve, images_in_data_dir):
    (tmp_path / "empty").mkdir()
    url, requests = serve(tmp_path / "empty")
    with pytest.raises(DataError, match="download failed.*404") as info:
        datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url)
    assert len(requests) == 2
    assert_lists_missing_files(str(info.value), tmp_path, images_in_data_dir)


def test_refused_connection_gives_missing_files_error(tmp_path, images_in_data_dir):
    with pytest.raises(DataError, match="download failed") as info:
        datasets.locate("mnist", data_dir=images_in_data_dir)
    assert_lists_missing_files(str(info.value), tmp_path, images_in_data_dir)


def test_silent_server_times_out(tmp_path, images_in_data_dir):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(DataError, match="timed out") as info:
            datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url, timeout=0.3)
    assert_lists_missing_files(str(info.value), tmp_path, images_in_data_dir)


def test_unreachable_mirror_is_tried_once_not_once_per_file(tmp_path, images_in_data_dir, monkeypatch):
    """Each mirror accepts a connection and hangs up; later files skip it."""
    accepted = []

    def hang_up(listener):
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(listener.getsockname()[1])
            connection.close()

    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    for listener in listeners:
        threading.Thread(target=hang_up, args=(listener,), daemon=True).start()
    ports = [listener.getsockname()[1] for listener in listeners]
    mirrors = tuple(f"http://127.0.0.1:{port}/" for port in ports)
    monkeypatch.delenv("HANDGRAD_MIRROR")
    monkeypatch.setitem(datasets.DATASETS, "mnist", replace(datasets.DATASETS["mnist"], mirrors=mirrors))
    try:
        with pytest.raises(DataError, match="download failed") as info:
            datasets.locate("mnist", data_dir=images_in_data_dir)
    finally:
        for listener in listeners:
            listener.close()
    assert sorted(accepted) == sorted(ports)
    assert_lists_missing_files(str(info.value), tmp_path, images_in_data_dir)


def test_download_off_asks_no_server(serve, mirror_folder, images_in_data_dir):
    url, requests = serve(mirror_folder)
    with pytest.raises(DataError, match="downloads are off"):
        datasets.locate("mnist", data_dir=images_in_data_dir, download=False, mirror=url)
    assert requests == []


def test_unwritable_cache_is_a_data_error(tmp_path, serve, mirror_folder, images_in_data_dir, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    url, _ = serve(mirror_folder)
    with pytest.raises(DataError, match="cannot write into"):
        datasets.locate("mnist", data_dir=images_in_data_dir, mirror=url)


def test_every_mirror_table_entry_is_well_formed():
    for spec in datasets.DATASETS.values():
        assert spec.mirrors and all(url.startswith(("https://", "http://")) and url.endswith("/") for url in spec.mirrors)
        assert len(spec.files) == 4 and len(spec.class_names) == 10
        for name, sha in spec.files.values():
            assert name.endswith("-ubyte.gz") and len(sha) == 64 and int(sha, 16) >= 0


def test_shared_files_match_the_checksum_table(shared_data):
    for spec in datasets.DATASETS.values():
        for file_name, sha in spec.files.values():
            digest = hashlib.sha256((shared_data / spec.folder / file_name).read_bytes()).hexdigest()
            assert digest == sha, file_name
