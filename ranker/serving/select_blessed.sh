#!/bin/sh
# select_blessed.sh BASE OUT: copies into OUT only the version folders of BASE (1/, 2/, …) that
# hold a BLESSED verdict whose "fingerprint" matches the SavedModel beside it (ranker/serving/
# verdict.py computes the same: sha256 of the sorted `sha256sum` manifest of saved_model.pb,
# variables/ and assets/). NOT_BLESSED, unjudged, tampered and half-written (.tmp-*) versions stay
# out. Fails when no version qualifies, so an image never ships without a blessed model.
# Used by the Dockerfile's `blessed` stage; POSIX sh and coreutils only.
set -eu
base=${1:?usage: select_blessed.sh BASE OUT}
out=${2:?usage: select_blessed.sh BASE OUT}

fingerprint() {
    (
        cd "$1"
        paths=""
        for p in saved_model.pb variables assets; do
            if [ -e "$p" ]; then paths="$paths $p"; fi
        done
        # shellcheck disable=SC2086
        find $paths -type f -exec sha256sum {} + | LC_ALL=C sort -k 2 | sha256sum | cut -d ' ' -f 1
    )
}

mkdir -p "$out"
kept=0
for dir in "$base"/*/; do
    [ -d "$dir" ] || continue
    version=$(basename "$dir")
    case "$version" in
        '' | *[!0-9]*) continue ;;
    esac
    if [ ! -f "$dir/BLESSED" ] || [ ! -f "$dir/saved_model.pb" ]; then
        echo "select_blessed: skipping version $version: not blessed" >&2
        continue
    fi
    want=$(sed -n 's/^ *"fingerprint": *"\([0-9a-f]*\)".*/\1/p' "$dir/BLESSED" | head -n 1)
    got=$(fingerprint "$dir")
    if [ -z "$want" ] || [ "$want" != "$got" ]; then
        echo "select_blessed: skipping version $version: its BLESSED verdict is for another model" >&2
        continue
    fi
    cp -R "$dir" "$out/$version"
    rm -f "$out/$version/NOT_BLESSED"
    kept=$((kept + 1))
    echo "select_blessed: version $version" >&2
done
if [ "$kept" -eq 0 ]; then
    echo "select_blessed: no blessed version under $base (run ranker validate and push)" >&2
    exit 1
fi
