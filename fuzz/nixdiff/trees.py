#!/usr/bin/env python3
"""Differential test of parse trees against Nix 2.8.

Generates random, sparsely parenthesized programs using every construct and operator. For each
program both parsers accept, `bld-parse --nix` prints the buildit AST back as fully
parenthesized Nix; `nix-instantiate --parse` of the original and of the reprint must then be
identical, i.e. buildit built the same tree as Nix (precedence, associativity, `or`, paths,
strings, ...). Programs on which Nix reports a duplicate attribute are skipped (Nix stops there).
Usage: trees.py SEED COUNT
"""
import os, random, subprocess, sys, tempfile, json
HERE = os.path.dirname(os.path.abspath(__file__))
BLD_PARSE = os.environ.get('BLD_PARSE', os.path.join(HERE, '..', '..', 'target', 'debug', 'examples', 'bld-parse'))
WORK = tempfile.mkdtemp(prefix='bld-nixdiff-')
import atexit, shutil
atexit.register(shutil.rmtree, WORK, True)
import re
random.seed(int(sys.argv[1])); N = int(sys.argv[2])
V = ['a','b','c','d','e','f','x','y']
OPS = ['+','-','*','/','++','//','==','!=','<','<=','>','>=','&&','||','->']
def atom(d=0):
    r = random.random()
    if r < .35: return random.choice(V)
    if r < .45: return str(random.randint(0, 20))
    if r < .5: return random.choice(['1.5', '.5', '2.', '1.5e3', '0.25'])
    if r < .6: return random.choice(['"s"', '"s${a}t"', '"${b}"', '""', '"\\n\\${x}$"'])
    if r < .65: return random.choice(["''\n  s\n  t\n''", "''x${a}''"])
    if r < .72: return random.choice(['./p', './p/${a}', '/abs/q', '~/h', 'r/s', './${b}x'])
    if r < .75: return random.choice(['h:x', '<n>'])
    if d <= 0: return random.choice(V)
    if r < .85: return '(' + gen(d-1) + ')'
    if r < .92: return '[ ' + ' '.join(sel(d-1) for _ in range(random.randint(0,3))) + ' ]'
    return attrs(d-1)
def attrpath():
    return '.'.join(random.choice(['a','b','or','"q r"','${a}','"${b}c"']) for _ in range(random.randint(1,2)))
def attrs(d):
    bs = []
    for _ in range(random.randint(0, 3)):
        r = random.random()
        if r < .6: bs.append(attrpath() + ' = ' + gen(d) + ';')
        elif r < .8: bs.append('inherit ' + ' '.join(random.sample(V, 2)) + ';')
        else: bs.append('inherit (' + gen(d) + ') ' + random.choice(V) + ';')
    return random.choice(['', 'rec ']) + '{ ' + ' '.join(bs) + ' }'
def sel(d):
    a = atom(d)
    r = random.random()
    if r < .2: return a + '.' + attrpath()
    if r < .3: return a + '.' + attrpath() + ' or ' + sel(max(d-1,0))
    if r < .33: return a + ' or'
    return a
def opexpr(d):
    parts = []
    for i in range(random.randint(1, 4)):
        pre = random.choice(['', '', '', '-', '!', '- ', '!-'])
        app = ' '.join(sel(d) for _ in range(random.choice([1,1,1,2,3])))
        if i: parts.append(random.choice(OPS))
        parts.append(pre + app)
        if random.random() < .15: parts.append('? ' + attrpath())
    return ' '.join(parts)
def gen(d):
    if d <= 0: return opexpr(0)
    r = random.random()
    if r < .5: return opexpr(d)
    if r < .6: return 'if ' + gen(d-1) + ' then ' + gen(d-1) + ' else ' + gen(d-1)
    if r < .7: return 'let ' + ' '.join(random.choice(V) + ' = ' + gen(d-1) + ';' for _ in range(random.randint(0,2))) + ' in ' + gen(d-1)
    if r < .75: return 'assert ' + gen(d-1) + '; ' + gen(d-1)
    if r < .82: return random.choice(V) + ': ' + gen(d-1)
    if r < .9:
        fs = random.sample(V, random.randint(0, 3))
        fs = [f + (' ? ' + gen(d-1) if random.random() < .3 else '') for f in fs]
        if random.random() < .4: fs.append('...')
        pat = '{ ' + ', '.join(fs) + ' }'
        r2 = random.random()
        if r2 < .2: pat = 'args@' + pat
        elif r2 < .4: pat = pat + ' @ args'
        return pat + ': ' + gen(d-1)
    return 'let { body = ' + gen(d-1) + '; }'
prefix = 'let or = 1; in ' + ''.join(v + ': ' for v in V)
d = os.path.join(WORK, 'cases'); os.makedirs(d, exist_ok=True)
cases = [prefix + gen(3) for _ in range(N)]
files = []
for i, c in enumerate(cases):
    f = f'{d}/c{i}.nix'; open(f, 'w').write(c); files.append(f)
r = subprocess.run([BLD_PARSE, '--nix'] + files, capture_output=True, text=True)
ours = {}; cur = None; it = iter(files); 
lines = r.stdout.split('\n')
i = 0
res = []
for line in lines:
    if line.startswith('NIX '): res.append(('ok', line[4:]))
    elif line.startswith('ERR '): res.append(('err', ''))
    elif line.startswith('error[') and res and res[-1][0] == 'err' and res[-1][1] == '': res[-1] = ('err', line)
def nixparse(path):
    r = subprocess.run(['nix-instantiate', '--parse', path], capture_output=True, text=True)
    if r.returncode: 
        msg = r.stderr.strip().split('\n')[0]
        return ('err', msg)
    return ('ok', r.stdout)
def norm(s):
    s = s.replace('"" + ', '').replace(' + ""', '')
    return s
bad = 0; both = 0
for f, src, o in zip(files, cases, res):
    n = nixparse(f)
    if 'already defined' in n[1]: continue
    nix_ok = n[0] == 'ok'
    if (o[0] == 'ok') != nix_ok:
        bad += 1
        if bad <= 10: print('ACCEPT MISMATCH', repr(src), o, n[1][:150])
        continue
    if o[0] == 'ok' and n[0] == 'ok':
        both += 1
        g = f + '.re.nix'; open(g, 'w').write(o[1])
        n2 = nixparse(g)
        if n2[0] != 'ok' or norm(n2[1]) != norm(n[1]):
            bad += 1
            if bad <= 10: print('TREE MISMATCH', repr(src), '\n  ours:', o[1][:300], '\n  nix :', n[1][:300], '\n  nix(ours):', n2[1][:300])
print('cases', N, 'both-ok', both, 'bad', bad)
