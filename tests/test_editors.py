"""The editor set-ups that docs/editors.md gives, run in the real editor where it is
installed: Emacs with eglot evaluates the doc's elisp block as written, connects to
`cnnspec lsp`, hovers AlexNet's conv1 and sees the E0202 of a typo
(editors/emacs/check-eglot.el). Skipped, saying why, where Emacs or eglot is missing;
`apt-get install emacs-nox elpa-eglot` brings both on Debian.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip("pygls")

EMACS = shutil.which("emacs")
ELPA = Path("/usr/share/emacs/site-lisp/elpa")


def _has_eglot() -> bool:
    probe = ('(progn (dolist (d (file-expand-wildcards "%s/*")) (add-to-list (quote '
             'load-path) d)) (kill-emacs (if (require (quote eglot) nil t) 0 1)))' % ELPA)
    return subprocess.run([EMACS, "--batch", "-Q", "--eval", probe],
                          capture_output=True, timeout=60).returncode == 0


def test_the_emacs_set_up_in_the_docs_works_with_eglot():
    if EMACS is None:
        pytest.skip("no emacs here (apt-get install emacs-nox elpa-eglot)")
    if not _has_eglot():
        pytest.skip("emacs has no eglot here (Emacs 29, or apt-get install elpa-eglot)")
    bin_dir = str(Path(sys.executable).parent)  # where `cnnspec` is installed
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run([EMACS, "--batch", "-Q", "-l", "editors/emacs/check-eglot.el"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "hover on conv1: **conv1**" in output
    assert "after the typo: cnnspec [E0202]: unknown layer or block `rleu`" in output
