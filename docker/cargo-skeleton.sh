#!/bin/sh
# cargo-skeleton.sh SRC DEST: copy the workspace's manifests and Cargo.lock from SRC to DEST,
# with every target root (lib.rs, main.rs, src/bin/*, files a manifest names with `path`)
# replaced by a stub. Building DEST compiles the dependencies only, so the Dockerfile keeps
# them in a layer of their own that changes only when a manifest or Cargo.lock does.
# (What cargo-chef does; a few lines of sh need no extra tool in the build image.)
set -eu
src=$1
dest=$2
mkdir -p "$dest"
cd "$src"
cp Cargo.lock "$dest/"
find . -name Cargo.toml -not -path '*/target/*' | while read -r manifest; do
    dir=$(dirname "$manifest")
    mkdir -p "$dest/$dir"
    cp "$manifest" "$dest/$manifest"
    {
        for f in "$dir/src/lib.rs" "$dir/src/main.rs" "$dir"/src/bin/*.rs "$dir"/src/bin/*/main.rs "$dir/build.rs"; do
            echo "$f"
        done
        sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest" | sed "s|^|$dir/|"
    } | sort -u | while read -r f; do
        [ -f "$f" ] || continue
        mkdir -p "$dest/$(dirname "$f")"
        case "$f" in
            */build.rs) cp "$f" "$dest/$f" ;;
            *) echo '#[allow(dead_code)] fn main() {}' >"$dest/$f" ;;
        esac
    done
done
