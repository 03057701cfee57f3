# Sourced by the other scripts: where build outputs and the broker binary live.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorestream-target}"
SCORESTREAM_CACHE="${SCORESTREAM_CACHE:-$HOME/.cache/scorestream}"
export PATH="$SCORESTREAM_CACHE/bin:$HOME/.cargo/bin:$PATH"
if [ -z "${TANSU_BIN:-}" ] && [ -x "$SCORESTREAM_CACHE/bin/tansu" ]; then
  export TANSU_BIN="$SCORESTREAM_CACHE/bin/tansu"
fi
