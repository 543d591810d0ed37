"""ImageNet weights on first use: the libraries' real download code against a local server, cache first, and a
one-line error within 5 s when offline (socket guard, LIVERCAD_OFFLINE, HF_HUB_OFFLINE)."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from livercad.errors import CheckpointError, WeightsUnavailableError
from livercad.runtime import weights
from livercad.runtime.download import Remote
from livercad.runtime.weights import ensure_weights, imagenet_remote, resolve_weights


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, tuple[bytes, dict[str, str]]] = {}  # path -> (body, extra headers)
        self.requests: list[str] = []
        self.connections = 0

    def verify_request(self, request, client_address) -> bool:  # every TCP connection, the probe included
        self.connections += 1
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self, body: bool) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        if self.path not in self.server.files:
            self.send_error(404)
            return
        data, headers = self.server.files[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._answer(body=True)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME/HF_HOME under tmp_path, downloads allowed, no proxy, no mirror, no own weights folder."""
    for var in ("LIVERCAD_OFFLINE", "HF_HUB_OFFLINE", "LIVERCAD_WEIGHTS_URL", "LIVERCAD_WEIGHTS_DIR", "HF_ENDPOINT",
                "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return tmp_path


@pytest.fixture
def server(caches: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every outgoing connection raises at once; the attempts are recorded."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise ConnectionRefusedError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


SMP = imagenet_remote("smp", "resnet34")


def _tiny_torch_file() -> tuple[bytes, str]:
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.ones(2, 2)}, buf)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def test_smp_resnet34_comes_from_the_hub_at_smps_pinned_revision() -> None:
    assert SMP is not None and SMP.route == "hf" and SMP.repo_id == "smp-hub/resnet34.imagenet"
    assert SMP.filename == "model.safetensors" and re.fullmatch(r"[0-9a-f]{40}", str(SMP.revision))
    tv = imagenet_remote("torchvision", "resnet50")
    assert tv is not None and tv.route == "torch" and tv.filename == "resnet50-11ad3fa6.pth"


def test_smp_download_through_huggingface_hub_then_cache_first(server: _Server, caches: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert SMP is not None
    data = safetensors_bytes({"conv1.weight": torch.ones(2, 3, 1, 1)})
    sha = hashlib.sha256(data).hexdigest()
    server.files[f"/{SMP.repo_id}/resolve/{SMP.revision}/model.safetensors"] = (
        data, {"X-Repo-Commit": str(SMP.revision), "ETag": f'"{sha}"'})
    monkeypatch.setenv("LIVERCAD_WEIGHTS_URL", server.url)
    info = ensure_weights("imagenet", family="smp", name="resnet34")
    snapshot = caches / "hf" / "hub" / "models--smp-hub--resnet34.imagenet" / "snapshots" / str(SMP.revision)
    assert Path(info.path or "") == snapshot / "model.safetensors" and info.sha256 == sha
    assert (caches / "hf" / "hub" / "models--smp-hub--resnet34.imagenet" / "blobs" / sha).is_file()
    assert any(r.startswith("GET ") for r in server.requests)
    before = (server.connections, len(server.requests))
    state, again = resolve_weights("imagenet", family="smp", name="resnet34")
    assert state is not None and torch.equal(state["conv1.weight"], torch.ones(2, 3, 1, 1))
    assert again == info and (server.connections, len(server.requests)) == before  # cache first: no connection


def test_hub_download_with_a_wrong_sha256_leaves_nothing_in_the_cache(server: _Server, caches: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert SMP is not None
    data = safetensors_bytes({"conv1.weight": torch.ones(1)})
    server.files[f"/{SMP.repo_id}/resolve/{SMP.revision}/model.safetensors"] = (
        data, {"X-Repo-Commit": str(SMP.revision), "ETag": f'"{"0" * 64}"'})
    monkeypatch.setenv("LIVERCAD_WEIGHTS_URL", server.url)
    with pytest.raises(WeightsUnavailableError, match="sha256"):
        ensure_weights("imagenet", family="smp", name="resnet34")
    assert not list((caches / "hf").rglob("model.safetensors")) and not list((caches / "hf").rglob("0" * 64))


def test_torchvision_download_through_torch_hub_then_cache_first(server: _Server, caches: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data, sha = _tiny_torch_file()
    name = f"tinynet-{sha[:8]}.pth"  # torch.hub checks the sha256 prefix in the file name (check_hash=True)
    monkeypatch.setattr(weights, "_torchvision_url", lambda n: f"https://download.pytorch.org/models/{name}")
    server.files[f"/models/{name}"] = (data, {})
    monkeypatch.setenv("LIVERCAD_WEIGHTS_URL", f"{server.url}/models/")
    info = ensure_weights("imagenet", family="torchvision", name="resnet50")
    assert Path(info.path or "") == caches / "torch" / "hub" / "checkpoints" / name and info.sha256 == sha
    assert server.requests == [f"GET /models/{name}"]
    before = server.connections
    state, again = resolve_weights("imagenet", family="torchvision", name="resnet50")
    assert state is not None and torch.equal(state["fc.weight"], torch.ones(2, 2))
    assert again == info and server.connections == before and len(server.requests) == 1


def test_torch_hub_hash_mismatch_is_one_clear_error(server: _Server, caches: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data, sha = _tiny_torch_file()
    name = f"tinynet-{'0' if sha[0] != '0' else '1'}{sha[1:8]}.pth"
    monkeypatch.setattr(weights, "_torchvision_url", lambda n: f"https://download.pytorch.org/models/{name}")
    server.files[f"/{name}"] = (data, {})
    monkeypatch.setenv("LIVERCAD_WEIGHTS_URL", server.url)
    with pytest.raises(WeightsUnavailableError, match="invalid hash") as err:
        ensure_weights("imagenet", family="torchvision", name="resnet50")
    assert "\n" not in str(err.value) and not list((caches / "torch").rglob("tinynet-*"))


def test_http_404_from_a_mirror_names_the_url(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVERCAD_WEIGHTS_URL", server.url)
    with pytest.raises(WeightsUnavailableError, match=f"download from {server.url}/resnet50-11ad3fa6.pth failed"):
        ensure_weights("imagenet", family="torchvision", name="resnet50")


@pytest.mark.parametrize("family,name,file", [("smp", "resnet34", "model.safetensors"),
                                              ("torchvision", "resnet50", "resnet50-11ad3fa6.pth")])
def test_no_route_fails_within_5_s_naming_file_and_folder(caches: Path, no_network: list[object], family: str,
                                                          name: str, file: str) -> None:
    imagenet_remote(family, name)  # imports (smp, torchvision) outside the timed part
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        ensure_weights("imagenet", family=family, name=name)
    assert time.perf_counter() - start < 5.0
    msg = str(err.value)
    assert "\n" not in msg and "no route to" in msg and f"place the file {file} " in msg and no_network
    folder = re.search(r" in (\S+)/ \(", msg)
    root = caches / ("hf" if family == "smp" else "torch")
    assert folder is not None and Path(folder.group(1)).is_relative_to(root)
    # the message is enough: the named file in the named folder is then found, offline
    Path(folder.group(1)).mkdir(parents=True)
    tensors = {"conv1.weight": torch.zeros(1)}
    if file.endswith(".safetensors"):
        (Path(folder.group(1)) / file).write_bytes(safetensors_bytes(tensors))
    else:
        torch.save(tensors, Path(folder.group(1)) / file)
    info = ensure_weights("imagenet", family=family, name=name)
    assert info.path == str(Path(folder.group(1)) / file)


def test_a_server_that_never_answers_fails_within_5_s(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: release.wait(30))  # a black hole
    start = time.perf_counter()
    try:
        with pytest.raises(WeightsUnavailableError, match="no answer within"):
            ensure_weights("imagenet", family="torchvision", name="resnet50")
    finally:
        release.set()
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("var", ["LIVERCAD_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_variables_fail_without_any_connection(caches: Path, no_network: list[object],
                                                       monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "1")
    for family, name in (("smp", "resnet34"), ("torchvision", "resnet50")):
        start = time.perf_counter()
        with pytest.raises(WeightsUnavailableError, match=f"{var}=1 is set") as err:
            ensure_weights("imagenet", family=family, name=name)
        assert time.perf_counter() - start < 5.0 and "place the file" in str(err.value)
    assert no_network == []


def test_ensure_weights_none_and_files(tmp_path: Path) -> None:
    assert ensure_weights("none", family="smp", name="resnet34").source == "random"
    path = tmp_path / "w.pth"
    torch.save({"a": torch.ones(1)}, path)
    info = ensure_weights(str(path), family="torchvision", name="resnet50")
    assert info.source == "file" and info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="not found"):
        ensure_weights(str(tmp_path / "missing.pth"), family="smp", name="resnet34")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load"):
        ensure_weights(str(tmp_path / "junk.pth"), family="smp", name="resnet34")


def test_remote_source_url_override_keeps_the_file_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVERCAD_WEIGHTS_URL", "http://mirror.local/w/")
    r = Remote("torch", "resnet50-11ad3fa6.pth", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth")
    assert r.source_url() == "http://mirror.local/w/resnet50-11ad3fa6.pth"
    h = Remote("hf", "model.safetensors", "https://huggingface.co/x", "smp-hub/resnet34.imagenet", "a" * 40)
    assert h.source_url() == f"http://mirror.local/w/smp-hub/resnet34.imagenet/resolve/{'a' * 40}/model.safetensors"
