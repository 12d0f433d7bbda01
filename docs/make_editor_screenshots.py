"""Capture real editor sessions for the README and docs/editors.md.

Takes: nothing (run from anywhere: `python docs/make_editor_screenshots.py`); needs
Neovim (0.7 or later) and tmux on the PATH, and `cnnspec lsp` working in this checkout.
Returns: writes docs/images/editor-hover.svg (hover over `conv1` in specs/alexnet.cnn)
and docs/images/editor-diagnostics.svg (a misspelt layer kind in specs/lenet5.cnn).

Neovim runs inside a detached tmux session with the language-server set-up that
docs/editors.md gives, the keys are typed with `tmux send-keys`, and the screen is
read back with `tmux capture-pane -e` (its colours included) and drawn as an SVG by
rich. Nothing is mocked: what the pictures show is what the server answered.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
SESSION = "cnnspec-screenshots"
WIDTH, HEIGHT = 104, 30

# Neovim's built-in LSP client; vim.lsp.start_client is what Neovim 0.7 (Debian 12's)
# has. docs/editors.md gives the set-up for newer versions and for nvim-lspconfig.
INIT_LUA = """
vim.cmd([[autocmd BufRead,BufNewFile *.cnn setfiletype cnn]])
vim.api.nvim_create_autocmd("FileType", {
  pattern = "cnn",
  callback = function(args)
    local client = vim.lsp.start_client({ name = "cnnspec", cmd = { %r, "lsp" } })
    vim.lsp.buf_attach_client(args.buf, client)
  end,
})
vim.opt.number = true
vim.opt.signcolumn = "yes"
vim.opt.hlsearch = false
vim.cmd("highlight NormalFloat ctermbg=236 ctermfg=252")
vim.cmd("highlight Pmenu ctermbg=236 ctermfg=252")
"""


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True,
                          text=True).stdout


def _keys(*keys: str, wait: float = 0.4) -> None:
    for key in keys:
        _tmux("send-keys", "-t", SESSION, key)
    time.sleep(wait)


def _capture(out: Path, title: str) -> None:
    screen = _tmux("capture-pane", "-p", "-e", "-t", SESSION)
    console = Console(record=True, width=WIDTH, force_terminal=True, file=io.StringIO())
    console.print(Text.from_ansi(screen.rstrip("\n")), soft_wrap=True)
    console.save_svg(str(out), title=title)
    print(f"wrote {out.relative_to(ROOT)}")


def _session(init: Path, file: str, folder: Path = ROOT) -> None:
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    _tmux("new-session", "-d", "-s", SESSION, "-x", str(WIDTH), "-y", str(HEIGHT),
          "-c", str(folder), f"TERM=xterm-256color nvim -u {init} {file}")
    time.sleep(3.0)  # Neovim starts, the server starts and checks the file


def main() -> int:
    missing = [tool for tool in ("nvim", "tmux") if not shutil.which(tool)]
    if missing:
        print(f"needs {' and '.join(missing)} (apt-get install neovim tmux)", file=sys.stderr)
        return 2
    server = shutil.which("cnnspec") or str(Path(sys.executable).with_name("cnnspec"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        init = Path(scratch) / "init.lua"
        init.write_text(INIT_LUA % server)
        try:
            _session(init, "specs/alexnet.cnn")
            _keys(":8", "Enter", "^")
            _keys(":lua vim.lsp.buf.hover()", "Enter", wait=2.5)
            _capture(IMAGES / "editor-hover.svg", "nvim specs/alexnet.cnn — hover on conv1")

            (Path(scratch) / "lenet5.cnn").write_text(
                (ROOT / "specs" / "lenet5.cnn").read_text())
            _session(init, "lenet5.cnn", Path(scratch))
            # misspell the first `conv` as `cnv`: the checker answers as you type
            _keys("/ conv ", "Enter", "l", "x", "l", wait=1.5)
            _keys(":lua vim.diagnostic.open_float()", "Enter", wait=1.0)
            _capture(IMAGES / "editor-diagnostics.svg",
                     "nvim lenet5.cnn — a misspelt layer kind, checked as you type")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
