#!/usr/bin/env bash
# Installs the Debian packages the local stack and the tests need, if missing.
# As root it runs apt-get; otherwise it names the packages and stops.
set -euo pipefail

declare -A wanted=(
  [redis-server]=redis-server
  [clamd]=clamav-daemon
)
missing=()
for binary in "${!wanted[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || missing+=("${wanted[$binary]}")
done
# Test files (clam.exe and friends) for the scanner tests and our .hdb signatures.
[ -d /usr/share/clamav-testfiles ] || missing+=(clamav-testfiles)
# The portal's browser tests drive Debian's Chromium with Playwright (never `playwright install`),
# and its screenshots need a font.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
# `make validate-deploy`: Compose v1's `docker-compose config` renders docker-compose.yml without an engine.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# The signed-authorization reader OCRs scanned pages with Tesseract (gateway/reading/), English data.
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
[ -f /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || [ -f /usr/share/tesseract-ocr/4.00/tessdata/eng.traineddata ] || missing+=(tesseract-ocr-eng)
# npm fetches axe-core for the portal's accessibility audit.
command -v npm >/dev/null 2>&1 || missing+=(npm)

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package's own daemons are not ours to run: the stack starts clamd with the
# project's configuration; stop whatever the package's scripts may have started.
