/**
 * No dead code: every declaration a module under appliance/ or console/server/ exports is used somewhere — in its
 * own module, another module, the web UI, a test or a benchmark. Read with the TypeScript
 * compiler, so a name is used only where it resolves to that very declaration (a word in a
 * string or a comment does not count). The NBD protocol's table of constants is exempt: it is
 * kept whole as the protocol's reference.
 */
import assert from 'node:assert/strict';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const EXEMPT = new Set(['appliance/nbd/protocol.ts']);

function loadProgram(): ts.Program {
  const files = (project: string): string[] => {
    const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, project), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')) });
    assert.ok(parsed, project);
    return parsed.fileNames;
  };
  const rootNames = [...new Set([...files('tsconfig.json'), ...files('web-ui/tsconfig.json'), ...files('console/web/tsconfig.json')])];
  return ts.createProgram({ rootNames, options: { noEmit: true, allowJs: false, skipLibCheck: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'], types: ['node', 'mocha'], strict: true } });
}

/** The name in a declaration of its own (not a use of it). */
function isDeclarationName(id: ts.Identifier): boolean {
  const p = id.parent;
  return (ts.isVariableDeclaration(p) || ts.isFunctionDeclaration(p) || ts.isClassDeclaration(p) || ts.isInterfaceDeclaration(p) || ts.isTypeAliasDeclaration(p) || ts.isEnumDeclaration(p)) && p.name === id;
}

describe('no dead code', function () {
  // Reading the whole project with the compiler takes ~10 s of CPU; a loaded CI machine stretches that.
  this.timeout(600_000);

  it('every declaration exported under appliance/ and console/server/ is used somewhere', () => {
    const program = loadProgram();
    const checker = program.getTypeChecker();
    const ours = program.getSourceFiles().filter((sf) => !sf.isDeclarationFile && !relative(ROOT, sf.fileName).startsWith('..') && !sf.fileName.includes('node_modules'));
    // What is exported under appliance/ and console/server/ (outside the exemption), by declaration name.
    const exported: { file: string; name: ts.Identifier }[] = [];
    for (const sf of ours) {
      const file = relative(ROOT, sf.fileName);
      if (!(file.startsWith('appliance/') || file.startsWith('console/server/')) || EXEMPT.has(file)) continue;
      for (const st of sf.statements) {
        if (!ts.canHaveModifiers(st) || !ts.getModifiers(st)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) continue;
        if (ts.isVariableStatement(st)) for (const d of st.declarationList.declarations) if (ts.isIdentifier(d.name)) exported.push({ file, name: d.name });
        if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st) || ts.isEnumDeclaration(st)) && st.name) exported.push({ file, name: st.name });
      }
    }
    // Every use of one of those names, resolved to its symbol (other identifiers are skipped).
    const names = new Set(exported.map((e) => e.name.text));
    const used = new Set<ts.Symbol>();
    for (const sf of ours) {
      const visit = (n: ts.Node): void => {
        if (ts.isIdentifier(n) && names.has(n.text) && !isDeclarationName(n)) {
          const s = checker.getSymbolAtLocation(n);
          if (s) {
            used.add(s);
            if (s.flags & ts.SymbolFlags.Alias) used.add(checker.getAliasedSymbol(s));
          }
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    const dead = exported
      .filter(({ name }) => {
        const s = checker.getSymbolAtLocation(name);
        return s !== undefined && !used.has(s);
      })
      .map(({ file, name }) => `${file}: ${name.text}`);
    assert.ok(ours.length > 100, `read the project (${ours.length} files)`);
    assert.deepEqual(dead, [], `exported but used nowhere:\n${dead.join('\n')}`);
  });
});
