"""Fixtures for the boto3 / AWS CLI tests: start the real `lightbox` binary on a free port with a
temporary data directory, and stop it with a signal.

The binary is `$LIGHTBOX_BIN` (default `target/debug/lightbox`, relative to the repository root).
With `LIGHTBOX_TEST_BACKEND=postgres-s3`, every server gets its own PostgreSQL database (on
`$LIGHTBOX_TEST_POSTGRES_URL`) and S3 prefix (on a `lightbox-test-s3` server started for the
session, `$LIGHTBOX_TEST_S3_BIN`, default `target/debug/lightbox-test-s3`) instead of the
embedded SQLite + files.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest
from botocore.config import Config

from sigv4 import SigV4, signed_session  # noqa: F401 (re-exported to the suites)

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("LIGHTBOX_BIN", REPO / "target" / "debug" / "lightbox"))
if not BIN.is_absolute():
    BIN = REPO / BIN

URL_RE = re.compile(r"http://[A-Za-z0-9.\-\[\]:]+")

BACKEND = os.environ.get("LIGHTBOX_TEST_BACKEND", "embedded")
S3_BIN = pathlib.Path(os.environ.get("LIGHTBOX_TEST_S3_BIN", REPO / "target" / "debug" / "lightbox-test-s3"))
S3_BUCKET = "lightbox-py"
S3_KEY, S3_SECRET = "lightbox-py-key", "lightbox-py-secret"


class ScaleOutStorage:
    """One S3 server for the session; one database and S3 prefix per data directory."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.admin_url = os.environ.get("LIGHTBOX_TEST_POSTGRES_URL")
        if not self.admin_url:
            pytest.fail("LIGHTBOX_TEST_BACKEND=postgres-s3 needs LIGHTBOX_TEST_POSTGRES_URL")
        self.proc = subprocess.Popen(
            [str(S3_BIN), "--root", str(root), "--listen", "127.0.0.1:0",
             "--access-key", S3_KEY, "--secret-key", S3_SECRET, "--bucket", S3_BUCKET],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            pytest.fail(f"lightbox-test-s3 did not start: {line!r}")
        self.endpoint = line
        self.databases = {}

    def env_for(self, data_dir):
        key = str(pathlib.Path(data_dir).resolve())
        if key not in self.databases:
            name = f"lbpy_{len(self.databases)}_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
            subprocess.run(["psql", self.admin_url, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
            self.databases[key] = name
        name = self.databases[key]
        return {
            "LIGHTBOX_CATALOG": self.admin_url.rsplit("/", 1)[0] + "/" + name,
            "LIGHTBOX_BLOB_STORE": f"s3://{S3_BUCKET}/{name}",
            "LIGHTBOX_S3_ENDPOINT": self.endpoint,
            "LIGHTBOX_S3_ACCESS_KEY_ID": S3_KEY,
            "LIGHTBOX_S3_SECRET_ACCESS_KEY": S3_SECRET,
        }

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


_SCALE_OUT = None


def scale_out_env(data_dir, tmp_root):
    """Extra environment for a server on `data_dir` under the configured backend."""
    global _SCALE_OUT
    if BACKEND == "embedded":
        return {}
    if BACKEND != "postgres-s3":
        pytest.fail(f"unknown LIGHTBOX_TEST_BACKEND {BACKEND}")
    if _SCALE_OUT is None:
        root = pathlib.Path(tmp_root) / "s3-root"
        root.mkdir(parents=True, exist_ok=True)
        _SCALE_OUT = ScaleOutStorage(root)
    return _SCALE_OUT.env_for(data_dir)


@pytest.fixture(scope="session", autouse=True)
def _stop_scale_out_storage():
    yield
    if _SCALE_OUT is not None:
        _SCALE_OUT.close()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lightbox:
    """One `lightbox serve` process."""

    def __init__(self, data_dir, log_dir, env=None, port=None, args=None):
        self.data_dir = pathlib.Path(data_dir)
        self.log_dir = pathlib.Path(log_dir)
        self.extra_env = dict(env or {})
        # Extra `lightbox serve` flags (e.g. `--clock-offset-secs N`); may be changed between restarts.
        self.extra_args = list(args or [])
        self.port = port
        self.proc = None
        self.url = None
        self.stdout_lines = []
        self.starts = 0

    def start(self, timeout=30.0, listen_host="127.0.0.1"):
        assert self.proc is None, "already running"
        if not BIN.exists():
            pytest.fail(f"lightbox binary not found at {BIN} (build it with `cargo build -p lightbox` or set LIGHTBOX_BIN)")
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
        env["LIGHTBOX_TRANSITION_DELAY_MS"] = "200"
        env.update(scale_out_env(self.data_dir, self.log_dir.parent))
        env.update(self.extra_env)
        self.starts += 1
        self.stderr_path = self.log_dir / f"lightbox-{self.port}-{self.starts}.stderr"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--listen", f"{listen_host}:{self.port}", "--data-dir", str(self.data_dir),
             *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        ready = threading.Event()
        self.stdout_lines = []

        def pump(proc=self.proc, lines=self.stdout_lines):
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if URL_RE.search(line):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(timeout)
        urls = [URL_RE.search(l).group(0) for l in self.stdout_lines if URL_RE.search(l)]
        if not urls or self.proc.poll() is not None:
            try:
                code = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            pytest.fail(
                f"lightbox did not become ready (exit code {code}): stdout={self.stdout_lines}\n"
                f"stderr:\n{self.read_stderr()}"
            )
        self.url = urls[0]
        if listen_host == "127.0.0.1":
            assert self.url == f"http://127.0.0.1:{self.port}", f"printed URL {self.url} for port {self.port}"
        else:
            assert self.url.endswith(f":{self.port}"), f"printed URL {self.url} for port {self.port}"
            self.url = f"http://127.0.0.1:{self.port}"
        return self

    def read_stderr(self):
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        if len(text) <= 3000:
            return text
        return text[:2000] + "\n[...]\n" + text[-1000:]

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stops with `sig` and returns the exit code (expected 0: a clean shutdown)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"lightbox did not exit within {timeout}s of {sig!r}")
        self.proc = None
        self.stderr.close()
        return code

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.stderr.close()

    def client(self, **config):
        """A boto3 client with host-prefix injection disabled and no retries."""
        cfg = Config(inject_host_prefix=False, retries={"max_attempts": 1, "mode": "standard"}, **config)
        return boto3.client(
            "medical-imaging",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=cfg,
        )


@pytest.fixture(autouse=True)
def isolated_aws_env(monkeypatch, tmp_path):
    """Keep the user's ~/.aws and AWS_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def module_server(tmp_path_factory, name, env=None):
    """A server on a data dir of its own, for a module-scoped fixture (which kills it)."""
    root = tmp_path_factory.mktemp(name)
    data = root / "data"
    data.mkdir()
    return Lightbox(data, root, env=env).start()


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(env={...}) starts a server on its own data dir."""
    servers = []

    def make(env=None, data_dir=None, args=None):
        n = len(servers)
        data = pathlib.Path(data_dir) if data_dir else tmp_path / f"data{n}"
        data.mkdir(parents=True, exist_ok=True)
        srv = Lightbox(data, tmp_path, env=env, args=args).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.kill()


@pytest.fixture
def server(make_server):
    return make_server()


def wait_status(client, datastore_id, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        props = client.get_datastore(datastoreId=datastore_id)["datastoreProperties"]
        if props["datastoreStatus"] == want:
            return props
        if time.monotonic() > deadline:
            raise AssertionError(f"{datastore_id} still {props['datastoreStatus']}, want {want}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The real DICOM test files (pydicom / pydicom-data wheels), collected once per test run
    (into pytest's temporary directory: exactly the wheels' files and index.json)."""
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(REPO / "scripts" / "dicom-corpus.py"), "collect", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def module_aws_env(tmp_path_factory):
    """What isolated_aws_env does, for module-scoped fixtures (which run before it)."""
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            mp.delenv(name, raising=False)
    d = tmp_path_factory.mktemp("aws-none")
    mp.setenv("AWS_CONFIG_FILE", str(d / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(d / "no-aws-credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield
    mp.undo()


