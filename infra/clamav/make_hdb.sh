#!/bin/sh
# Regenerate gateway-test.hdb (md5:size:name) from Debian's clamav-testfiles.
# freshclam cannot run offline, so these hashes let clamd recognise every
# ClamAV test file with only our own signatures loaded.
# Usage: infra/clamav/make_hdb.sh [TESTFILES_DIR] > infra/clamav/gateway-test.hdb
set -eu
dir="${1:-/usr/share/clamav-testfiles}"
LC_ALL=C
export LC_ALL

# hdb_line NAME FILE: one signature line; the name is sanitized because ':' and
# other punctuation would break the md5:size:name format.
hdb_line() {
    sum=$(md5sum < "$2" | cut -d' ' -f1)
    size=$(wc -c < "$2" | tr -d ' ')
    printf '%s:%s:Gateway.Test.ClamAVTestFile.%s\n' \
        "$sum" "$size" "$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '_')"
}

for f in "$dir"/*; do
    [ -f "$f" ] && hdb_line "$(basename "$f")" "$f"
done

# Archives match only after clamd unpacks them, when the inner clam.exe is
# hashed. Today it is byte-identical to the shipped clam.exe (already listed
# above); emit a separate line only if a future package makes them differ.
inner=$(mktemp)
trap 'rm -f "$inner"' EXIT
tar -xzOf "$dir/clam.tar.gz" clam.exe > "$inner"
cmp -s "$inner" "$dir/clam.exe" || hdb_line "inner_clam.exe" "$inner"
