#!/usr/bin/python3
"""install.py — `make install` / `make uninstall` into a temporary DESTDIR.

    BUILD=build /usr/bin/python3 tests/server/install.py

A generated model stands in for models/default.gguf (DEFAULT_MODEL=...), so the test does not
depend on the trained file. Checks: the exact file list and modes, installed files equal their
sources, the unit's ExecStart points into PREFIX and its exposure (systemd-analyze security)
stays <= 2.0, an existing config survives a second install, the installed daemon started without
--model serves the installed default model, a missing default model stops `make install` with a
message that says what to do, and `make uninstall` removes everything but the config.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as srv  # noqa: E402  (tests/server/run.py: Daemon, genmodel, expect)

ROOT = srv.ROOT
PREFIX = "/opt/edgellm"  # not the default, so the unit's path substitution shows
EXPECTED = {
    "opt/edgellm/bin/edgellm": 0o755,
    "opt/edgellm/bin/edgellmd": 0o755,
    "opt/edgellm/lib/systemd/system/edgellmd.service": 0o644,
    "opt/edgellm/lib/sysusers.d/edgellm.conf": 0o644,
    "opt/edgellm/lib/tmpfiles.d/edgellm.conf": 0o644,
    "opt/edgellm/share/edgellm/default.gguf": 0o644,
    "opt/edgellm/share/doc/edgellm/README.md": 0o644,
    "opt/edgellm/share/doc/edgellm/edgellmd.conf": 0o644,
    "etc/edgellm/edgellmd.conf": 0o644,
}


def make(*args):
    """Runs make in the source tree with this build's BUILD/SANITIZER; returns the result."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    cmd = ["make", "--no-print-directory", "-C", ROOT, f"BUILD={srv.BUILD}",
           f"SANITIZER={os.environ.get('SANITIZER', '')}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def files_under(top):
    out = {}
    for d, _, names in os.walk(top):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, top)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def main():
    os.makedirs(srv.WORK, exist_ok=True)
    # Outside $BUILD: the Makefile includes every *.d under it, and sysusers.d/tmpfiles.d are
    # directories.
    tmp = tempfile.mkdtemp(prefix="edgellm-install-")
    dest = os.path.join(tmp, "dest")
    model = srv.small_model()
    try:
        r = make("install", f"DESTDIR={dest}", f"PREFIX={PREFIX}", f"DEFAULT_MODEL={model}")
        srv.expect(r.returncode == 0, "make install failed:\n" + r.stdout + r.stderr)
        got = files_under(dest)
        srv.expect(got == EXPECTED, "installed files:\n" + "\n".join(
            f"  {p} {m:o}" for p, m in sorted(got.items())) + "\nexpected:\n" + "\n".join(
            f"  {p} {m:o}" for p, m in sorted(EXPECTED.items())))
        for rel, src in (("opt/edgellm/bin/edgellmd", srv.DAEMON),
                         ("opt/edgellm/bin/edgellm", os.path.join(srv.BUILD, "edgellm")),
                         ("opt/edgellm/share/edgellm/default.gguf", model),
                         ("etc/edgellm/edgellmd.conf", os.path.join(ROOT, "conf/edgellmd.conf")),
                         ("opt/edgellm/lib/sysusers.d/edgellm.conf",
                          os.path.join(ROOT, "systemd/edgellm.sysusers.conf"))):
            srv.expect(same_bytes(os.path.join(dest, rel), src), f"{rel} differs from {src}")
        with open(os.path.join(dest, "opt/edgellm/lib/systemd/system/edgellmd.service")) as f:
            unit = f.read()
        srv.expect(f"ExecStart={PREFIX}/bin/edgellmd --config /etc/edgellm/edgellmd.conf\n"
                   in unit and "/usr/local" not in unit, unit)
        if shutil.which("systemd-analyze"):
            r = subprocess.run(["systemd-analyze", "security", "--offline=true", os.path.join(
                dest, "opt/edgellm/lib/systemd/system/edgellmd.service")],
                capture_output=True, text=True, timeout=120)
            m = re.search(r"Overall exposure level for edgellmd\.service: ([0-9.]+)", r.stdout)
            srv.expect(m and float(m.group(1)) <= 2.0, "installed unit: " + r.stdout[-300:])
        else:
            print("    NOTICE: systemd-analyze not installed; the installed unit was not checked")
        print("    installed: " + ", ".join(sorted(got)))

        # The installed daemon, with the installed config and no --model, finds
        # <prefix>/share/edgellm/default.gguf next to its binary.
        exe = os.path.join(dest, "opt/edgellm/bin/edgellmd")
        d = srv.Daemon("--config", os.path.join(dest, "etc/edgellm/edgellmd.conf"), model=False,
                       exe=exe)
        try:
            installed_model = os.path.join(dest, "opt/edgellm/share/edgellm/default.gguf")
            d.wait_log("loading " + re.escape(os.path.realpath(installed_model)) + "$")
            st, _, raw = d.http("GET", "/v1/models")
            ids = [m["id"] for m in json.loads(raw)["data"]]
            srv.expect(st == 200 and ids == ["default"], (st, raw))
            st, _, raw = d.post("/v1/chat/completions", {
                "model": "default", "messages": srv.OK_MSG, "max_tokens": 3,
                "logit_bias": srv.NO_EOS})
            srv.expect(st == 200 and json.loads(raw)["usage"]["completion_tokens"] == 3, raw)
        finally:
            srv.expect(d.stop() == 0, "exit status")

        # A second install keeps an edited config.
        conf = os.path.join(dest, "etc/edgellm/edgellmd.conf")
        with open(conf, "w") as f:
            f.write("# edited by the owner\nslots = 2\n")
        r = make("install", f"DESTDIR={dest}", f"PREFIX={PREFIX}", f"DEFAULT_MODEL={model}")
        srv.expect(r.returncode == 0, r.stdout + r.stderr)
        srv.expect("keeping the existing /etc/edgellm/edgellmd.conf" in r.stdout, r.stdout)
        with open(conf) as f:
            srv.expect(f.read() == "# edited by the owner\nslots = 2\n", "config overwritten")

        # A missing default model is named, with what to do; nothing is installed.
        dest2 = os.path.join(tmp, "dest2")
        r = make("install", f"DESTDIR={dest2}", f"PREFIX={PREFIX}",
                 "DEFAULT_MODEL=models/missing.gguf")
        srv.expect(r.returncode != 0 and "the default model models/missing.gguf does not exist"
                   in r.stderr and "make default-model" in r.stderr, r.stdout + r.stderr)
        srv.expect(not os.path.exists(dest2), "files installed despite the error")
        # DEFAULT_MODEL= (empty) installs without a model, and says so.
        r = make("install", f"DESTDIR={dest2}", f"PREFIX={PREFIX}", "DEFAULT_MODEL=")
        srv.expect(r.returncode == 0 and "no default model installed" in r.stdout,
                   r.stdout + r.stderr)
        srv.expect("opt/edgellm/share/edgellm/default.gguf" not in files_under(dest2),
                   "a model was installed")

        # Uninstall leaves only the owner's config.
        r = make("uninstall", f"DESTDIR={dest}", f"PREFIX={PREFIX}")
        srv.expect(r.returncode == 0, r.stdout + r.stderr)
        left = files_under(dest)
        srv.expect(set(left) == {"etc/edgellm/edgellmd.conf"}, f"left after uninstall: {left}")
        srv.expect("kept /etc/edgellm/edgellmd.conf" in r.stdout, r.stdout)
        srv.expect(not os.path.exists(os.path.join(dest, "opt/edgellm/share/edgellm")),
                   "empty data directory left behind")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("install tests: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
