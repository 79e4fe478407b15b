// The VS Code side of buildit's editor support: registers the `.bld` language (package.json)
// and starts the language server `buildit lsp` over stdio with vscode-languageclient. The
// client asks the server for nothing beyond the standard LSP capabilities it announces, so it
// works with whatever subset of them a given `buildit lsp` implements.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

/** @type {LanguageClient | undefined} */
let client;

function serverOptions() {
  const config = vscode.workspace.getConfiguration('buildit');
  const command = config.get('server.path', 'buildit');
  const args = ['lsp', ...config.get('server.extraArgs', [])];
  return { command, args, transport: TransportKind.stdio };
}

function clientOptions() {
  return {
    documentSelector: [
      { scheme: 'file', language: 'bld' },
      { scheme: 'untitled', language: 'bld' },
      // The spec files whose diagnostics `buildit lsp` reports (docs/editors.md).
      { scheme: 'file', pattern: '**/{container,pkg}.yaml' },
    ],
    synchronize: {
      fileEvents: vscode.workspace.createFileSystemWatcher('**/*.bld'),
    },
  };
}

async function start(context) {
  client = new LanguageClient('buildit', 'buildit language server', serverOptions(), clientOptions());
  try {
    await client.start();
  } catch (err) {
    const path = vscode.workspace.getConfiguration('buildit').get('server.path', 'buildit');
    vscode.window.showErrorMessage(
      `buildit: could not start \`${path} lsp\` (${err && err.message ? err.message : err}). ` +
        'Set `buildit.server.path` to a buildit that has the `lsp` command.',
    );
    client = undefined;
  }
  return context;
}

async function stop() {
  if (client) {
    const c = client;
    client = undefined;
    await c.stop();
  }
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('buildit.restartServer', async () => {
      await stop();
      await start(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('buildit.server')) {
        await stop();
        await start(context);
      }
    }),
  );
  await start(context);
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
