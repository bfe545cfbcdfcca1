#!/usr/bin/env bash
# Edit a test variant: the variants in tests/variants/<name>.patch are edits of this
# tree's kernel crates (see runner/src/variant.rs). This script gives you a tree to
# make the edit in, and writes the edit file back from it.
#
#   scripts/variant.sh edit <name>    # target/hotkernel/variants/<name>/edit: this tree's
#                                     # crates with the variant's edit applied (a git repo
#                                     # whose first commit is this tree)
#   scripts/variant.sh save <name>    # writes tests/variants/<name>.patch from that tree
#                                     # (its description, the files it touches, the diff)
#   scripts/variant.sh list           # the variants
#
# When the tree has moved on and an edit no longer applies, `edit` leaves the rejected
# hunks in *.rej files next to the files they belong to: redo them by hand, delete the
# .rej files, then `save`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
crates=(kernel updater image-format record-derive)
parts=(Cargo.toml build.rs src)

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[ $# -ge 1 ] || usage
cmd=$1
case "$cmd" in
list)
    ls tests/variants/*.patch | sed 's|tests/variants/||; s|\.patch$||'
    exit 0
    ;;
edit | save) [ $# -eq 2 ] || usage ;;
*) usage ;;
esac
name=$2
case "$name" in
*[!a-z0-9_-]* | "") echo "variant names are [a-z0-9_-]+" >&2; exit 2 ;;
esac
patch=$root/tests/variants/$name.patch
dir=$root/target/hotkernel/variants/$name/edit
# git must not see this repository around the scratch tree.
export GIT_CEILING_DIRECTORIES=$(dirname "$dir")
git_() { git -C "$dir" -c user.name=variant -c user.email=variant@localhost "$@"; }

case "$cmd" in
edit)
    rm -rf "$dir"
    mkdir -p "$dir"
    for c in "${crates[@]}"; do
        for p in "${parts[@]}"; do
            [ -e "$c/$p" ] && mkdir -p "$dir/$c" && cp -r "$c/$p" "$dir/$c/"
        done
    done
    git_ init -q
    git_ add -A
    git_ commit -q -m "this tree"
    if [ -f "$patch" ]; then
        if ! git_ apply --whitespace=nowarn "$patch" 2>/dev/null; then
            git_ apply --reject --whitespace=nowarn "$patch" || true
            echo "some hunks of $name.patch did not apply; they are in:" >&2
            (cd "$dir" && find . -name '*.rej' | sed 's|^\./|  |') >&2
        fi
    fi
    echo "edit under $dir, then: scripts/variant.sh save $name"
    ;;
save)
    [ -d "$dir/.git" ] || { echo "no edit tree for $name: run scripts/variant.sh edit $name first" >&2; exit 1; }
    if (cd "$dir" && find . -name '*.rej' | grep -q .); then
        echo "resolve the *.rej files in $dir first" >&2
        exit 1
    fi
    git_ add -A
    description=""
    if [ -f "$patch" ]; then
        description=$(awk '/^Files:/ || /^diff --git/ {exit} {print}' "$patch")
    fi
    [ -n "$description" ] || description="The \`$name\` variant."
    {
        printf '%s\n\n' "$description"
        echo "Files:"
        git_ diff --cached --stat=100 HEAD | sed '$d' | sed 's/^/ /'
        echo
        git_ diff --cached HEAD
    } >"$patch"
    echo "wrote $patch"
    ;;
esac
