// The ODL extension: starts `offerd lsp` (the language server of the offerd package) over stdio
// for .offer files, and restarts it when its settings change. Highlighting is the TextMate
// grammar in syntaxes/, which needs no server.
'use strict';
const path = require('path');
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

let client;

function workspaceDir() {
  const folders = vscode.workspace.workspaceFolders;
  return folders && folders.length > 0 ? folders[0].uri.fsPath : undefined;
}

// `offerd.path`: a bare name is looked up on PATH; a relative path (.venv/bin/offerd) is taken
// from the first workspace folder, where a project's virtualenv usually is.
function serverCommand() {
  const config = vscode.workspace.getConfiguration('offerd');
  let command = config.get('path') || 'offerd';
  const dir = workspaceDir();
  if (dir && !path.isAbsolute(command) && command.includes('/')) command = path.join(dir, command);
  return { command, args: ['lsp', ...(config.get('args') || [])], options: dir ? { cwd: dir } : {} };
}

async function start() {
  const server = serverCommand();
  // no `transport`: the client would add --stdio; the server's stdin and stdout are the channel
  client = new LanguageClient('offerd', 'offerd (ODL)', server, {
    documentSelector: [{ scheme: 'file', language: 'odl' }, { scheme: 'untitled', language: 'odl' }],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.offer') },
  });
  try {
    await client.start();
  } catch (err) {
    const shown = [server.command, ...server.args].join(' ');
    vscode.window.showErrorMessage(
      `offerd: could not start \`${shown}\` (${err && err.message ? err.message : err}). ` +
      'Install offerd, or set offerd.path to its executable (e.g. .venv/bin/offerd).');
  }
}

async function stop() {
  if (!client) return;
  const running = client;
  client = undefined;
  try {
    await running.stop();
  } catch (err) {
    // a server that never started has nothing to stop
  }
}

async function restart() {
  await stop();
  await start();
}

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('offerd.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('offerd.path') || e.affectsConfiguration('offerd.args')) restart();
    }),
  );
  return start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
