#!/usr/bin/python3
"""Rebuild build/photos/ (the real-photo evaluation set) from git snapshots of public repositories.

  /usr/bin/python3 tools/photos/fetch_photos.py [--manifest tools/photos/manifest.json]
      [--mirror /work/.mirror] [--out build/photos]

Each photo in the manifest names a repository, a path and a commit; its bytes come from
`git -C MIRROR/<owner>+<name>/repo show <commit>:<path>` (a snapshot brought by the `fetch` tool,
or any clone: --mirror DIR with DIR/<owner>+<name>/repo), and are checked against the manifest's
SHA-256 before they are written. Photos are never committed. Exit status 1 if any photo could not
be rebuilt (the others are still written); the message names the repository to fetch.
"""
import argparse, hashlib, json, os, subprocess, sys

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument('--manifest', default=os.path.join(here, 'manifest.json'))
    ap.add_argument('--mirror', default=os.environ.get('EMOTE_PHOTO_MIRROR', '/work/.mirror'))
    ap.add_argument('--out', default='build/photos')
    a = ap.parse_args()
    photos = json.load(open(a.manifest))['photos']
    os.makedirs(a.out, exist_ok=True)
    bad = 0
    missing_repos = set()
    for p in photos:
        dest = os.path.join(a.out, p['name'])
        if os.path.exists(dest) and hashlib.sha256(open(dest, 'rb').read()).hexdigest() == p['sha256']:
            continue
        git_dir = os.path.join(a.mirror, p['repo'].replace('/', '+'), 'repo')
        try:
            data = subprocess.run(['git', '-C', git_dir, 'show', f"{p['commit']}:{p['path']}"],
                                  check=True, capture_output=True).stdout
        except (subprocess.CalledProcessError, FileNotFoundError):
            print(f"fetch_photos: {p['name']}: {p['repo']}@{p['commit'][:12]}:{p['path']} not in {git_dir}",
                  file=sys.stderr)
            missing_repos.add(p['repo'])
            bad += 1
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != p['sha256']:
            print(f"fetch_photos: {p['name']}: SHA-256 {digest} != manifest {p['sha256']}", file=sys.stderr)
            bad += 1
            continue
        tmp = dest + '.tmp'
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, dest)
    for r in sorted(missing_repos):
        print(f'fetch_photos: fetch github:{r} (a snapshot under {a.mirror}) and run this again', file=sys.stderr)
    print(f'fetch_photos: {len(photos) - bad} of {len(photos)} photos in {a.out}')
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main())
