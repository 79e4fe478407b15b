#!/usr/bin/env python3
"""Differential test of acceptance against Nix 2.8 on token soup.

Generates random sequences of lexically interesting fragments (often glued without spaces)
inside a few templates and checks that the buildit parser and `nix-instantiate --parse` agree
on whether the text is syntactically valid (`with` and undefined variables do not count).
Usage: accept.py SEED COUNT
"""
import os, random, subprocess, sys, tempfile, json
HERE = os.path.dirname(os.path.abspath(__file__))
BLD_PARSE = os.environ.get('BLD_PARSE', os.path.join(HERE, '..', '..', 'target', 'debug', 'examples', 'bld-parse'))
WORK = tempfile.mkdtemp(prefix='bld-nixdiff-')
import atexit, shutil
atexit.register(shutil.rmtree, WORK, True)
random.seed(int(sys.argv[1]))
N = int(sys.argv[2])
frags = ['a', 'b', 'or', 'x', "a'", 'a-b', '1', '0', '1.5', '.5', 'e5', '01', '1.', '+', '-', '*', '/', '++', '//', '==', '!=', '<', '>', '<=', '>=', '&&', '||', '->', '!', '?',
         '.', ':', ';', ',', '@', '=', '(', ')', '[', ']', '{', '}', '${', '...', '"s"', "''s''", '"${a}"', './p', '/q', '~/r', 'a/b', '<n>', 'h:x', '~', '$',
         'let', 'in', 'if', 'then', 'else', 'assert', 'rec', 'inherit', '#c\n', '/*c*/', '\n', '{ a = 1; }', '[ 1 ]', '(a)', 'a.b', 'a: ', '{ a, ... }: ', '2/3', 'x/', '/', '${a}']
templates = ['{}', 'let a = {}; in {}', '{{ a = {}; }}', '[ {} ]', '{} {}', '({})', 'x: {}', '{} + {}', '{{ {} }}', 'a.{}', '{}.a', '"${{{}}}"', './{}']
def soup():
    n = random.randint(1, 7)
    out = ''
    for _ in range(n):
        out += random.choice(frags) + random.choice(['', ' ', ' ', ''])
    return out
cases = []
for i in range(N):
    t = random.choice(templates)
    k = t.count('{}')
    cases.append(t.format(*[soup() for _ in range(k)]))
d = os.path.join(WORK, 'cases')
os.makedirs(d, exist_ok=True)
files = []
for i, c in enumerate(cases):
    f = f'{d}/c{i}.bld'
    open(f, 'w', newline='').write(c)
    files.append(f)
ours = {}
r = subprocess.run([BLD_PARSE] + files, capture_output=True, text=True)
cur = None
for line in r.stdout.split('\n'):
    if line.startswith('OK '):
        ours[line[3:]] = ['ok']
    elif line.startswith('ERR '):
        cur = line[4:]; ours[cur] = []
    elif line.startswith('error['):
        ours[cur].append(line.split(']')[0][6:])
def ours_ok(f):
    v = ours[f]
    return v == ['ok'] or (len(v) > 0 and all(c == 'buildit::parse::with' for c in v))
bad = 0; okc = 0
for f, src in zip(files, cases):
    r = subprocess.run(['nix-instantiate', '--parse', f], capture_output=True, text=True)
    msg = r.stderr.strip().split('\n')[0] if r.returncode else ''
    nix_ok = r.returncode == 0 or 'undefined variable' in msg or 'already defined' in msg
    o = ours_ok(f)
    okc += nix_ok
    if o != nix_ok:
        bad += 1
        if bad <= 20:
            print('MISMATCH', repr(src), 'ours:', ours[f], 'nix:', msg)
print('cases', len(cases), 'nix-ok', okc, 'mismatches', bad)
