"""Hub round trip, offline: a minimal Hub-compatible HTTP server on 127.0.0.1 (started by the test, stopped by
it or by its own deadline) receives `model.push_to_hub`, `processor.push_to_hub`, the conversion's
`--push-to-hub` and `push_folder_to_hub`, and serves the snapshots back to `from_pretrained`, pipelines,
`snapshot_download` and `trust_remote_code` loading in a child process (huggingface_hub reads `HF_ENDPOINT`
at import time, so the child gets it from its environment)."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from hf_testing import BLOCK_AIT_HF, direct_prediction, one_cpu_thread, random_image, save_tiny_solvers

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_local_test_token"


def git_blob_id(content: bytes) -> str:
    """The id git (and the Hub, as ETag of regular files) gives a file: sha1 of 'blob <size>\\0' + content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class LocalHub:
    """Just enough of the Hub API for huggingface_hub's create_repo / preupload / commit / repo_info / tree /
    resolve calls. Every file is taken as a regular (inline, base64) git file: no LFS or Xet."""

    def __init__(self) -> None:
        self.repos: dict[str, list[tuple[str, dict[str, bytes]]]] = {}  # repo id -> commits (sha, files)
        self.requests: list[tuple[str, str, str]] = []  # (method, path, authorization header)
        self.unknown: list[str] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # ----------------------------------------------------------------------------- repository state
    def snapshot(self, repo_id: str, revision: str = "main") -> tuple[str, dict[str, bytes]] | None:
        commits = self.repos.get(repo_id, [])
        if revision == "main":
            return commits[-1] if commits else ("0" * 40, {})
        return next((commit for commit in commits if commit[0] == revision), None)

    def commit(self, repo_id: str, operations: list[dict]) -> str:
        with self.lock:
            parent, files = self.snapshot(repo_id)
            files = dict(files)
            for operation in operations:
                key, value = operation["key"], operation["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key != "header":
                    raise ValueError(f"operation {key!r} is not supported by the local hub")
            digest = hashlib.sha1(parent.encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\0" + files[path])
            sha = digest.hexdigest()
            self.repos[repo_id].append((sha, files))
            return sha

    # ----------------------------------------------------------------------------- server life
    def start(self, lifetime_s: float = 540.0) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.handle(self, "HEAD")

            def do_GET(self):
                hub.handle(self, "GET")

            def do_POST(self):
                hub.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        # the server stops by itself even if the test never gets to stop it
        self.deadline = threading.Timer(lifetime_s, self.server.shutdown)
        self.deadline.daemon = True
        self.deadline.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.deadline.cancel()
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------------------- requests
    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(request.path).path
        self.requests.append((method, path, request.headers.get("Authorization", "")))
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        parts = [unquote(part) for part in path.strip("/").split("/")]
        try:
            if method == "POST" and parts == ["api", "repos", "create"]:
                return self.create_repo(request, json.loads(body))
            if method == "POST" and parts == ["api", "validate-yaml"]:
                return self.reply(request, 200, {"errors": [], "warnings": []})
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id, rest = "/".join(parts[2:4]), parts[4:]
                if repo_id not in self.repos:
                    return self.reply(request, 404, {"error": "Repository not found"}, "RepoNotFound")
                if method == "POST" and rest[:1] == ["preupload"]:
                    files = json.loads(body)["files"]
                    return self.reply(
                        request,
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                if method == "POST" and rest[:1] == ["commit"]:
                    operations = [json.loads(line) for line in body.splitlines() if line.strip()]
                    sha = self.commit(repo_id, operations)
                    url = f"http://{request.headers['Host']}/{repo_id}/commit/{sha}"
                    return self.reply(
                        request, 200, {"commitUrl": url, "commitOid": sha, "pullRequestUrl": None}
                    )
                if method == "GET" and (not rest or rest[0] == "revision"):
                    return self.repo_info(request, repo_id, rest[1] if len(rest) > 1 else "main")
                if method == "GET" and rest[:1] == ["tree"]:
                    return self.tree(request, repo_id, rest[1])
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                return self.resolve(request, method, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        except Exception as error:  # a bug in the local hub: report it to the client and the test
            self.unknown.append(f"{method} {path}: {error!r}")
            return self.reply(request, 500, {"error": repr(error)})
        self.unknown.append(f"{method} {path}")
        return self.reply(request, 404, {"error": f"not implemented by the local hub: {method} {path}"})

    def reply(
        self, request, status: int, payload=None, error_code: str | None = None, headers=None, body=None
    ):
        data = body if body is not None else json.dumps(payload).encode()
        request.send_response(status)
        request.send_header(
            "Content-Type", "application/json" if body is None else "application/octet-stream"
        )
        request.send_header("Content-Length", str(len(data)))
        if error_code:
            request.send_header("X-Error-Code", error_code)
            request.send_header("X-Error-Message", str((payload or {}).get("error", error_code)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def create_repo(self, request, payload: dict) -> None:
        name, organization = payload["name"], payload.get("organization")
        repo_id = f"{organization}/{name}" if organization else name
        url = f"http://{request.headers['Host']}/{repo_id}"
        with self.lock:
            if repo_id in self.repos:  # the Hub's conflict answer carries the url too (create_repo reads it)
                return self.reply(request, 409, {"error": "You already created this model repo", "url": url})
            self.repos[repo_id] = []
        return self.reply(request, 200, {"url": url})

    def repo_info(self, request, repo_id: str, revision: str) -> None:
        snapshot = self.snapshot(repo_id, revision)
        if snapshot is None:
            return self.reply(request, 404, {"error": "Invalid rev id"}, "RevisionNotFound")
        sha, files = snapshot
        siblings = [{"rfilename": path} for path in sorted(files)]
        return self.reply(request, 200, {"id": repo_id, "sha": sha, "siblings": siblings, "private": False})

    def tree(self, request, repo_id: str, revision: str) -> None:
        snapshot = self.snapshot(repo_id, revision)
        if snapshot is None:
            return self.reply(request, 404, {"error": "Invalid rev id"}, "RevisionNotFound")
        entries = [
            {"type": "file", "path": path, "size": len(content), "oid": git_blob_id(content)}
            for path, content in sorted(snapshot[1].items())
        ]
        return self.reply(request, 200, entries)

    def resolve(self, request, method: str, repo_id: str, revision: str, filename: str) -> None:
        if repo_id not in self.repos:
            return self.reply(request, 404, {"error": "Repository not found"}, "RepoNotFound")
        snapshot = self.snapshot(repo_id, revision)
        if snapshot is None:
            return self.reply(request, 404, {"error": "Invalid rev id"}, "RevisionNotFound")
        sha, files = snapshot
        if filename not in files:
            return self.reply(
                request, 404, {"error": "Entry not found"}, "EntryNotFound", {"X-Repo-Commit": sha}
            )
        content = files[filename]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(content)}"'}
        return self.reply(request, 200, headers=headers, body=content)


CHILD = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    import torch
    from huggingface_hub import snapshot_download
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    import ait_hf
    from ait_hf.cli import main as cli

    dirs, fixture, work, image_path = json.loads(sys.argv[1])
    image = Image.open(image_path)
    report = {}

    # 1. transformers' own push_to_hub, then loading back from the server
    model = ait_hf.AiTForDepthAndInstanceSegmentation.from_pretrained(dirs["depth"])
    processor = ait_hf.AiTImageProcessor.from_pretrained(dirs["depth"])
    model.push_to_hub("tester/ait-depth-tiny")
    processor.push_to_hub("tester/ait-depth-tiny")
    loaded = AutoModelForDepthEstimation.from_pretrained("tester/ait-depth-tiny")
    report["same_weights"] = all(
        torch.equal(tensor, loaded.state_dict()[name]) for name, tensor in model.state_dict().items()
    )
    report["same_processor"] = AutoImageProcessor.from_pretrained("tester/ait-depth-tiny").to_dict() == processor.to_dict()
    snapshot = snapshot_download("tester/ait-depth-tiny")
    report["snapshot_files"] = sorted(p.name for p in __import__("pathlib").Path(snapshot).iterdir())
    depth = pipeline("depth-estimation", model="tester/ait-depth-tiny")
    arrays = {"hub_depth": depth(image)["predicted_depth"].numpy()}

    # 2. the conversion command's --push-to-hub uploads the whole folder (card, processor, code)
    status = cli([
        "convert", "--checkpoint", fixture + "/checkpoint.pth", "--original-config", fixture + "/config.json",
        "--output-dir", work + "/converted", "--push-to-hub", "tester/ait-det-converted",
    ])
    report["convert_status"] = status
    detector = pipeline("object-detection", model="tester/ait-det-converted")
    local = pipeline("object-detection", model=work + "/converted")
    report["hub_detections"] = detector(image, threshold=0.0)
    report["local_detections"] = local(image, threshold=0.0)

    # 3. a remote-code folder pushed with push_folder_to_hub (loaded without ait_hf by REMOTE_CHILD)
    ait_hf.push_folder_to_hub(dirs["joint"], "tester/ait-joint-code")
    np.savez(work + "/hub_arrays.npz", **arrays)
    print(json.dumps(report))
    """
)


REMOTE_CHILD = BLOCK_AIT_HF + textwrap.dedent(
    """
    import json
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained("tester/ait-joint-code", trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained("tester/ait-joint-code", trust_remote_code=True)
    print(json.dumps([type(model).__module__, type(processor).__module__, model.config.tasks]))
    """
)


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    yield from one_cpu_thread()


@pytest.fixture
def local_hub():
    hub = LocalHub()
    endpoint = hub.start()
    yield hub, endpoint
    hub.stop()


def test_local_hub_serves_what_was_committed(local_hub, tmp_path):
    """The server itself, through huggingface_hub in a child process (upload, list, download)."""
    hub, endpoint = local_hub
    script = textwrap.dedent(
        """
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        api.create_repo("tester/plain")
        api.upload_file(path_or_fileobj=b"hello", path_in_repo="a/b.txt", repo_id="tester/plain")
        print(open(hf_hub_download("tester/plain", "a/b.txt"), "rb").read().decode())
        print(sorted(api.list_repo_files("tester/plain")))
        """
    )
    completed = _run_child(script, [], endpoint, tmp_path / "hf_home")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split("\n")[:2] == ["hello", "['a/b.txt']"]
    assert hub.snapshot("tester/plain")[1] == {"a/b.txt": b"hello"}
    assert not hub.unknown, hub.unknown


def _run_child(script: str, arguments: list, endpoint: str, home: Path) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "pythonpath")
    }
    environment.update(
        HF_ENDPOINT=endpoint,
        HF_TOKEN=TOKEN,
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=home.parent,
        timeout=600,
    )


def test_push_and_reload_round_trip(local_hub, tmp_path, fixtures_dir):
    hub, endpoint = local_hub
    dirs = {kind: str(path) for kind, path in save_tiny_solvers(tmp_path / "models").items()}
    image = random_image(50, 70)
    image.save(tmp_path / "image.png")
    work = tmp_path / "work"
    work.mkdir()
    arguments = [dirs, str(fixtures_dir / "det"), str(work), str(tmp_path / "image.png")]
    completed = _run_child(CHILD, arguments, endpoint, tmp_path / "hf_home")
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not hub.unknown, hub.unknown

    # the server saw authenticated writes and served the reads
    writes = [(method, path, auth) for method, path, auth in hub.requests if method == "POST"]
    assert {path for _, path, _ in writes} >= {
        "/api/repos/create",
        "/api/models/tester/ait-depth-tiny/preupload/main",
        "/api/models/tester/ait-depth-tiny/commit/main",
    }
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in writes)
    assert any(method == "GET" and "/resolve/" in path for method, path, _ in hub.requests)

    # 1. push_to_hub of model and processor, loaded back equal; pipeline from the Hub id
    pushed = hub.snapshot("tester/ait-depth-tiny")[1]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(pushed)
    assert pushed["model.safetensors"] == (Path(dirs["depth"]) / "model.safetensors").read_bytes()
    assert report["same_weights"] and report["same_processor"]
    assert set(report["snapshot_files"]) == set(pushed)
    expected = direct_prediction(Path(dirs["depth"]), "depth", image)["predicted_depth"].numpy()
    np.testing.assert_allclose(np.load(work / "hub_arrays.npz")["hub_depth"], expected, rtol=1e-5, atol=1e-5)

    # 2. the conversion pushed its whole output folder, model card included
    assert report["convert_status"] == 0
    converted = hub.snapshot("tester/ait-det-converted")[1]
    local_files = {p.name for p in (work / "converted").iterdir()}
    assert set(converted) == local_files
    assert {"README.md", "preprocessor_config.json", "modeling_ait.py", "configuration_ait.py"} <= local_files
    assert converted["README.md"] == (work / "converted" / "README.md").read_bytes()
    assert b"pipeline_tag: object-detection" in converted["README.md"]
    assert report["hub_detections"] == report["local_detections"] and len(report["hub_detections"]) > 0

    # 3. remote code through the Hub, in a process that cannot import ait_hf
    completed = _run_child(REMOTE_CHILD, [], endpoint, tmp_path / "hf_home_remote")
    assert completed.returncode == 0, completed.stderr[-4000:]
    model_module, processor_module, tasks = json.loads(completed.stdout.strip().splitlines()[-1])
    assert model_module.startswith("transformers_modules") and model_module.endswith(".modeling_ait")
    assert processor_module.startswith("transformers_modules") and processor_module.endswith(
        ".image_processing_ait"
    )
    assert tasks == ["depth", "instance_segmentation"]
    assert json.loads(hub.snapshot("tester/ait-joint-code")[1]["config.json"])["auto_map"]["AutoConfig"] == (
        "configuration_ait.AiTConfig"
    )
