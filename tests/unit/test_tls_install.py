"""`pip install certmint` is the TLS helper alone: certmint.tls imports only the standard library, and
installs and works in a fresh virtual environment that holds nothing else."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPERATOR_ONLY = ["kopf", "kubernetes", "cryptography", "prometheus_client", "jwcrypto", "certifi", "yaml"]
FRAMEWORKS = ["uvicorn", "starlette", "aiohttp", "httpx", "grpc", "anyio", "h11"]


def test_certmint_tls_imports_only_the_standard_library():
    """In a subprocess where importing any third-party package raises, certmint.tls and its testing
    module still import, and none of those packages is loaded."""
    blocked = OPERATOR_ONLY + FRAMEWORKS
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {blocked!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked: certmint.tls must not need it")
                return None

        sys.meta_path.insert(0, Block())
        import certmint, certmint.tls, certmint.tls.testing
        from certmint.tls import MTLS, server_context, client_context, CertificateReloader
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def site_packages_size(venv: Path) -> int:
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())


def test_installs_into_a_fresh_venv_without_the_operator(tmp_path):
    """Build the wheel from a copy of the sources (with pip's build isolation, as `make venv` installs
    certmint: pyproject.toml's setuptools>=77 comes from the index or pip's cache), install it with
    --no-deps --no-index into a new venv holding nothing else, then use certmint.tls there: a real
    handshake between MTLS contexts made from a kubelet-style volume (certificates from openssl,
    since that venv has no cryptography)."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "operator", src / "operator", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheels"),
                            str(src)], capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "wheels").glob("certmint-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    before = site_packages_size(venv)
    # The fresh venv has no pip of its own (nothing but the interpreter); pip --python installs into
    # it as its own pip would.
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr
    helper_size = site_packages_size(venv) - before

    certs = tmp_path / "certs"
    certs.mkdir()
    openssl = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-days", "1", "-subj", "/CN=fresh", "-addext", "subjectAltName=IP:127.0.0.1",
               "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")]
    subprocess.run(openssl, check=True, capture_output=True, timeout=60)
    shutil.copy(certs / "tls.crt", certs / "ca.crt")
    script = textwrap.dedent(f"""
        import importlib.util, socket, sys, threading
        from pathlib import Path
        import certmint.tls
        from certmint.tls import MTLS
        from certmint.tls.testing import SecretVolume
        missing = [m for m in {OPERATOR_ONLY!r} if importlib.util.find_spec(m) is not None]
        assert not missing, f"installed without being asked for: {{missing}}"
        assert certmint.tls.__file__.startswith(sys.prefix), certmint.tls.__file__
        volume = SecretVolume(Path({str(tmp_path / "volume")!r}))
        volume.write({{n: Path({str(certs)!r}, n).read_bytes() for n in ("tls.crt", "tls.key", "ca.crt")}})
        with MTLS(volume.directory) as mtls:
            server = socket.create_server(("127.0.0.1", 0))
            front = mtls.server_context()
            def serve():
                conn, _ = server.accept()
                with front.wrap_socket(conn, server_side=True) as s:
                    s.sendall(s.getpeercert()["serialNumber"].encode())
            t = threading.Thread(target=serve)
            t.start()
            with socket.create_connection(server.getsockname()) as raw:
                with mtls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    assert s.recv(100).decode() == mtls.generation.serial
            t.join()
            print("ok, reloads by", mtls.watch_mode)
    """)
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60, check=False,
                            cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr
    print(f"\ncertmint (TLS helper alone) adds {helper_size / 1e6:.2f} MB to a fresh venv's site-packages "
          f"({result.stdout.strip()})")
