"""End to end in a real browser: `make lab` opens a `.py` notebook as a notebook, and saving
it from JupyterLab writes the paired `.ipynb` too.

Playwright drives Debian's headless Chromium (``make browserdeps`` in .ci/run installs it)
against the command `make lab` runs (its recipe, read with ``make -n``), started on a copy
of notebooks/ in a temporary folder, on a free loopback port, with a token, and with the
user's own Jupyter settings and configs kept out. Skipped, with the reason, where Chromium
or the playwright package is absent.
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")

REPO = Path(__file__).resolve().parents[2]
NAME = "01_theory"
# what the project ships for JupyterLab: the notebooks with their jupytext.toml, and the
# settings folder `make lab` hands to JupyterLab (default viewers)
LAB_FILES = ("notebooks", ".jupyter")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# headless Chromium on a machine without internet: no background fetches to wait on
CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `make browserdeps` installs it"),
    pytest.mark.skipif(shutil.which("make") is None, reason="needs make to read the `make lab` recipe"),
]


def _lab_command() -> list[str]:
    """The command `make lab` runs, with this interpreter's JupyterLab."""
    recipe = subprocess.run(["make", "-s", "-n", "-o", ".venv/.installed", "lab"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    argv = shlex.split(recipe)
    assert len(recipe.splitlines()) == 1 and argv[0].endswith("jupyter") and argv[1] == "lab", recipe
    return [sys.executable, "-m", "jupyterlab", *argv[2:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A JupyterLab server started by the `lab` fixture, still booting when handed over."""
    base: str         # http://127.0.0.1:<port>
    token: str
    project: Path     # the copy of the project's notebook files it serves
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"{self.base}/lab?token={self.token}"

    def wait_until_up(self, timeout: float = 40.0) -> None:
        status = f"{self.base}/api/status?token={self.token}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, \
                f"jupyter lab exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(status, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    """JupyterLab started as `make lab` starts it, in a copy of the project's notebook files;
    not waited for, so that Chromium starts meanwhile. Its process group is ended afterwards."""
    project = tmp_path / "project"
    for name in LAB_FILES:
        # plain copies: fresh mtimes, so jupytext does not find the .ipynb newer than its .py
        shutil.copytree(REPO / name, project / name, copy_function=shutil.copy)
    home = tmp_path / "home"
    env = {**os.environ,
           "JUPYTER_CONFIG_DIR": str(home / "config"),        # no ~/.jupyter configs
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),  # no user settings (default viewers)
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "XDG_CONFIG_HOME": str(home / "xdg")}                # no global jupytext config
    port, token = _free_port(), secrets.token_hex(16)
    argv = [*_lab_command(), "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:  # CI runs as root, which jupyter refuses without this flag
        argv.append("--allow-root")
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield Lab(f"http://127.0.0.1:{port}", token, project, proc, log)
    finally:
        # the server and the kernel it started share one process group (start_new_session);
        # a throwaway server in a temporary folder has nothing to save: no graceful stop
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_py_opens_as_a_notebook_and_saves_both_files_of_the_pair(lab, tmp_path):
    py, ipynb = lab.project / "notebooks" / f"{NAME}.py", lab.project / "notebooks" / f"{NAME}.ipynb"
    original = py.read_text()
    marker = f"# edited in JupyterLab {secrets.token_hex(4)}"
    shot = tmp_path / "lab.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            lab.wait_until_up()
            page.goto(lab.url)
            item = page.locator(".jp-DirListing-item", has=page.get_by_text(f"{NAME}.py", exact=True))
            item.dblclick(timeout=30_000)
            opened = page.locator(".jp-NotebookPanel, .jp-FileEditor").first
            opened.wait_for(timeout=20_000)
            assert page.locator(".jp-FileEditor").count() == 0, \
                f"{NAME}.py opened in the text editor, not as a notebook (screenshot: {shot})"
            assert page.locator(".jp-NotebookPanel").is_visible()
            # the first code cell's first line; clicked at its left edge, where no toast can cover it
            page.locator(".jp-NotebookPanel .jp-CodeCell .cm-content").first.click(position={"x": 2, "y": 2})
            page.keyboard.press("Control+Home")
            page.keyboard.insert_text(marker)  # one input event, not one per key
            page.keyboard.press("Enter")
            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not (marker in py.read_text() and marker in ipynb.read_text()):
                time.sleep(0.2)
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.scroll_into_view_if_needed()
        finally:
            page.screenshot(path=str(shot))
            browser.close()
    assert marker in py.read_text(), f"the edit was not saved to {NAME}.py (screenshot: {shot})"
    assert marker in ipynb.read_text(), f"{NAME}.ipynb was not saved with its .py: pairing is off"
    assert [line for line in py.read_text().splitlines() if line != marker] == original.splitlines(), \
        f"saving from JupyterLab changed more of {NAME}.py than the edit"
    assert _cells(nbformat.read(ipynb, as_version=4)) == _cells(jupytext.read(py)), \
        f"{NAME}.py and {NAME}.ipynb differ after the save"
