// VS Code client for cnnspec: starts the language server (`cnnspec lsp` by default,
// the `cnnspec.serverCommand` setting) over stdio for every `.cnn` file and restarts
// it when that setting changes. Highlighting comes from syntaxes/cnn.tmLanguage.json
// and needs no server.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function configuredServerCommand() {
  const command = vscode.workspace.getConfiguration("cnnspec").get("serverCommand");
  const valid = Array.isArray(command) && command.length > 0
    && command.every((part) => typeof part === "string" && part.length > 0);
  return valid ? command : ["cnnspec", "lsp"];
}

function createClient(command) {
  const [program, ...args] = command;
  const serverOptions = { command: program, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "cnn" },
      { scheme: "untitled", language: "cnn" },
    ],
    // Imported block files change what a spec means; tell the server about edits on disk.
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.cnn") },
    outputChannelName: "cnnspec",
  };
  return new LanguageClient("cnnspec", "cnnspec language server", serverOptions, clientOptions);
}

async function startServer() {
  const command = configuredServerCommand();
  client = createClient(command);
  try {
    await client.start();
  } catch (error) {
    client = undefined;
    const reason = error && error.message ? error.message : String(error);
    vscode.window.showErrorMessage(
      `cnnspec: could not start the language server \`${command.join(" ")}\` (${reason}). ` +
      "Install it with `pip install \"cnnspec[lsp]\"`, or point the `cnnspec.serverCommand` " +
      "setting at the cnnspec of your virtual environment.");
  }
}

async function stopServer() {
  if (client) {
    const running = client;
    client = undefined;
    await running.stop();
  }
}

async function restartServer() {
  await stopServer();
  await startServer();
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("cnnspec.restartServer", restartServer),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("cnnspec.serverCommand")) {
        restartServer();
      }
    }),
  );
  await startServer();
}

function deactivate() {
  return stopServer();
}

module.exports = { activate, deactivate };
