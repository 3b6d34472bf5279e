#!/usr/bin/env bash
# Multi30k task 1 (Elliott et al., 2016): raw, cased captions in de, en, fr and cs,
# splits train (29,000), val (1,014) and test_2016_flickr (1,000), gzipped, aligned by line.
#
#   scripts/get_multi30k.sh                      # download from the multi30k/dataset repository
#   scripts/get_multi30k.sh --from DIR           # copy the same *.gz files from a local folder
#   scripts/get_multi30k.sh --out DIR            # somewhere else than data/multi30k
set -euo pipefail

BASE_URL="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
FROM=""
OUT="data/multi30k"
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROM="${2:?--from needs a folder}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "get_multi30k.sh: unknown argument '$1' (expected --from DIR or --out DIR)" >&2; exit 2 ;;
  esac
done

declare -A LINES=([train]=29000 [val]=1014 [test_2016_flickr]=1000)
mkdir -p "$OUT"
for split in train val test_2016_flickr; do
  for lang in de en fr cs; do
    name="$split.$lang.gz"
    tmp="$OUT/.$name.part"
    if [ -n "$FROM" ]; then
      [ -f "$FROM/$name" ] || { echo "get_multi30k.sh: $FROM/$name: no such file" >&2; exit 1; }
      cp "$FROM/$name" "$tmp"
    else
      curl -fsSL --retry 3 "$BASE_URL/$name" -o "$tmp" \
        || { rm -f "$tmp"; echo "get_multi30k.sh: could not download $BASE_URL/$name" >&2; exit 1; }
    fi
    got=$(gzip -cd "$tmp" | wc -l)
    if [ "$got" -ne "${LINES[$split]}" ]; then
      rm -f "$tmp"
      echo "get_multi30k.sh: $name has $got lines, expected ${LINES[$split]}" >&2; exit 1
    fi
    mv "$tmp" "$OUT/$name"
  done
done
echo "Multi30k task 1 in $OUT: $(ls "$OUT" | wc -l) files (train 29,000, val 1,014, test_2016_flickr 1,000 lines)"
