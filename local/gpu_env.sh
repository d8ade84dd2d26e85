# Sourced by local/offline_gpu_run.sh and bench/gpu_rows.sh on the offline GPU machine: ESPnet and the
# packages the machine lacks from .whl/ (wheels for its Python) into /tmp/site, espeak-ng, sox and
# their libraries from .debs/ into /tmp/sys (either folder may be absent: what it holds is skipped).
# shellcheck shell=bash
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl 2>&1 | grep -v -i warning || true
fi
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
mkdir -p /tmp/sys && for f in .debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" /tmp/sys; done
export PATH=/tmp/sys/usr/bin:$PATH
export LD_LIBRARY_PATH=/tmp/sys/usr/lib/x86_64-linux-gnu:/tmp/sys/usr/lib/x86_64-linux-gnu/pulseaudio:/tmp/sys/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ESPEAK_DATA_PATH=/tmp/sys/usr/lib/x86_64-linux-gnu
