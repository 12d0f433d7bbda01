;;; check-eglot.el --- try docs/editors.md's Emacs set-up against `cnnspec lsp'  -*- lexical-binding: t -*-

;; Takes: nothing; run from the repository root, with `cnnspec' on PATH or in .venv:
;;   emacs --batch -Q -l editors/emacs/check-eglot.el
;; (Emacs 29 has eglot built in; on Emacs 28, Debian's elpa-eglot provides it.)
;; Returns: exit status 0 when the elisp block of docs/editors.md, evaluated as it is
;; written there, gives `.cnn' files cnn-mode with keywords highlighted, and eglot
;; connects to `cnnspec lsp', hovers AlexNet's conv1 (96x55x55, 34,944 parameters)
;; and reports E0202 for a misspelt layer kind; 1 with the failed step otherwise.

(dolist (dir (file-expand-wildcards "/usr/share/emacs/site-lisp/elpa/*"))
  (add-to-list 'load-path dir))  ; Debian's elpa-eglot, for Emacs 28
(require 'eglot)
(setenv "PATH" (concat (expand-file-name ".venv/bin") ":" (getenv "PATH")))
(add-to-list 'exec-path (expand-file-name ".venv/bin"))

(defun check-eglot--fail (step &rest args)
  (message "FAILED: %s" (apply #'format step args))
  (kill-emacs 1))

(with-temp-buffer  ; the set-up exactly as docs/editors.md gives it
  (insert-file-contents "docs/editors.md")
  (unless (re-search-forward "^```elisp\n" nil t)
    (check-eglot--fail "docs/editors.md has no elisp block"))
  (let ((start (point)))
    (re-search-forward "^```")
    (eval-region start (match-beginning 0))))

(find-file "specs/alexnet.cnn")
(unless (eq major-mode 'cnn-mode)
  (check-eglot--fail "specs/alexnet.cnn opened in %s" major-mode))
(font-lock-ensure)
(goto-char (point-min))
(search-forward "network alexnet")
(unless (eq (get-text-property (match-beginning 0) 'face) 'font-lock-keyword-face)
  (check-eglot--fail "`network' is not highlighted as a keyword"))

;; eglot-ensure waits for the command loop, which batch mode has not: connect now.
(apply #'eglot (eglot--guess-contact))
(unless (eglot-current-server)
  (check-eglot--fail "eglot did not connect to cnnspec lsp"))

(goto-char (point-min))
(search-forward "conv1: conv")
(goto-char (match-beginning 0))
(let* ((hover (jsonrpc-request (eglot-current-server) :textDocument/hover
                               (eglot--TextDocumentPositionParams)))
       (text (plist-get (plist-get hover :contents) :value)))
  (unless (and text (string-match-p "96x55x55" text) (string-match-p "34,944" text))
    (check-eglot--fail "hover on conv1 said %S" text))
  (message "hover on conv1: %s" (car (split-string text "\n"))))

(goto-char (point-min))
(search-forward "relu1: relu")
(replace-match "relu1: rleu")
(eglot--signal-textDocument/didChange)  ; eglot sends it on an idle timer otherwise
(let ((deadline (+ (float-time) 10)) found)
  (while (and (not found) (< (float-time) deadline))
    (accept-process-output nil 0.1)
    (setq found (seq-find (lambda (d) (string-match-p "E0202" (flymake-diagnostic-text d)))
                          (flymake-diagnostics))))
  (unless found
    (check-eglot--fail "no E0202 after the typo: %S"
                       (mapcar #'flymake-diagnostic-text (flymake-diagnostics))))
  (message "after the typo: %s" (car (split-string (flymake-diagnostic-text found) "\n"))))

(set-buffer-modified-p nil)  ; nothing is saved
(message "docs/editors.md's Emacs set-up works: cnn-mode, eglot, hover, diagnostics")
(kill-emacs 0)
