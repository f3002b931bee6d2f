# Sourced by build-binaries.sh and build-rootfs.sh: the cache folder outside the repo, and one
# build per cached folder at a time.

cache=${MASTERSHRINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mastershrink}

# built_or_locked OUT WHAT: prints OUT and ends the script when OUT is built; otherwise returns
# holding OUT's lock (fd 9), after waiting for another build of OUT, which may have built it.
built_or_locked() {
  local out=$1 what=$2
  if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
  fi
  mkdir -p "$(dirname "$out")"
  exec 9>"$out.lock"
  if ! flock -n 9; then
    printf '[%s] waiting for another build of %s\n' "$what" "$out" >&2
    flock 9
  fi
  if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
  fi
}
