#!/usr/bin/env python3
"""Differential test of string literals against Nix 2.8.

Generates random "..." and ''...'' literals from tricky fragments (escapes, $, ${, ''$, ''',
CR/LF, indentation) and checks that `bld-parse --str` and
`nix-instantiate --eval --strict --json` agree on acceptance and on the value.
Usage: strings.py SEED COUNT
(build the helper first: cargo build -p buildit-lang --example bld-parse)
"""
import os, random, subprocess, sys, tempfile, json
HERE = os.path.dirname(os.path.abspath(__file__))
BLD_PARSE = os.environ.get('BLD_PARSE', os.path.join(HERE, '..', '..', 'target', 'debug', 'examples', 'bld-parse'))
WORK = tempfile.mkdtemp(prefix='bld-nixdiff-')
import atexit, shutil
atexit.register(shutil.rmtree, WORK, True)
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
N = int(sys.argv[2]) if len(sys.argv) > 2 else 600
dq = ['a', ' ', '\n', '\\n', '\\\\', '\\"', '$', '${"x"}', '$${', '{', '}', '\\$', '\\${', "'", '\r', '\r\n', '\t', 'é', '\\é', '\\t', '\\r', '$\\', '$$', '\\\n']
ind = ['a', ' ', '  ', '\n', '\t', "'", "''$", "'''", "''\\n", "''\\t", "''\\ ", '$', '${"x"}', '$${', '\r', "''${", '{', '}', '\\', '"', "'$", '$\'', "''\\\n", '\r\n', 'é', "''\\é"]
cases = []
for i in range(N):
    if i % 2 == 0:
        body = ''.join(random.choice(dq) for _ in range(random.randint(0, 8)))
        src = '"' + body + '"'
    else:
        pre = random.choice(['', '\n', '  \n', ' ', '\n  ', '   \n   '])
        body = ''.join(random.choice(ind) for _ in range(random.randint(0, 10)))
        src = "''" + pre + body + "''"
    cases.append(src)
d = os.path.join(WORK, 'cases')
os.makedirs(d, exist_ok=True)
files = []
for i, c in enumerate(cases):
    f = f'{d}/c{i}.bld'
    open(f, 'w', newline='').write(c)
    files.append(f)
ours = {}
for f in files:
    r = subprocess.run([BLD_PARSE, '--str', f], capture_output=True, text=True)
    line = r.stdout.split('\n')[0]
    if line.startswith('STR '):
        ours[f] = ('ok', json.loads(line[4:]))
    else:
        ours[f] = ('err', r.stdout.split('\n')[1] if '\n' in r.stdout else r.stdout)
bad = 0
for f, src in zip(files, cases):
    r = subprocess.run(['nix-instantiate', '--eval', '--strict', '--json', f], capture_output=True, text=True)
    nix = ('ok', json.loads(r.stdout)) if r.returncode == 0 else ('err', r.stderr.split('\n')[0])
    o = ours[f]
    if o[0] != nix[0] or (o[0] == 'ok' and o[1] != nix[1]):
        bad += 1
        if bad <= 15:
            print('MISMATCH', repr(src), 'ours:', repr(o), 'nix:', repr(nix))
print('cases', len(cases), 'mismatches', bad)
