#!/usr/bin/env bash
# Put a model version's serving image into Kubernetes: the `kubectl set image` path, plus a render for installs.
#
#   rollout.sh render VERSION     print every manifest, the image set to <prefix>/<model>-serving:v<VERSION>
#   rollout.sh apply VERSION      render | kubectl apply: the first install, or after editing the manifests
#   rollout.sh set-image VERSION  kubectl set image on the running Deployment: a new model version
#
# apply and set-image wait for the rollout (kubectl rollout status) and undo it when it does not complete.
# Environment: DRIFTLOOP_MODEL_NAME (churn), DRIFTLOOP_IMAGE_PREFIX (driftloop, e.g. registry.example.com/driftloop),
# ROLLOUT_TIMEOUT (180s), KUBECTL (kubectl), and kubectl's own (KUBECONFIG, the current context).
set -euo pipefail

usage() {
  sed -n '3,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -eq 2 ] || usage
action=$1 version=${2#v}
[[ $version =~ ^[1-9][0-9]*$ ]] || { echo "rollout.sh: VERSION must be a model version number, got '$2'" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
kubectl=${KUBECTL:-kubectl}
model=$(printf '%s' "${DRIFTLOOP_MODEL_NAME:-churn}" | tr '[:upper:]' '[:lower:]')
repository=${DRIFTLOOP_IMAGE_PREFIX:-driftloop}/$model-serving
image=$repository:v$version
namespace=driftloop
deployment=deployment/driftloop-serving
timeout=${ROLLOUT_TIMEOUT:-180s}

render() {
  local overlay
  overlay=$(mktemp -d)
  # A copy rather than an overlay that points back here: kustomize refuses absolute paths to a base.
  cp "$here"/*.yaml "$overlay/"
  cat >>"$overlay/kustomization.yaml" <<YAML
images:
  - name: driftloop/churn-serving
    newName: $repository
    newTag: v$version
YAML
  "$kubectl" kustomize "$overlay" || { rm -rf "$overlay"; return 1; }
  rm -rf "$overlay"
}

wait_or_undo() {
  if "$kubectl" -n "$namespace" rollout status "$deployment" --timeout="$timeout"; then
    echo "rollout.sh: $image serves $deployment"
    return
  fi
  echo "rollout.sh: $image did not become ready within $timeout; undoing the rollout" >&2
  "$kubectl" -n "$namespace" rollout undo "$deployment" || true
  "$kubectl" -n "$namespace" rollout status "$deployment" --timeout="$timeout" || true
  exit 1
}

case $action in
  render) render ;;
  apply)
    render | "$kubectl" apply -f -
    wait_or_undo
    ;;
  set-image)
    # Annotate first: the Deployment copies change-cause onto the ReplicaSet that `set image` creates, so
    # `kubectl rollout history` names the model version of each revision.
    "$kubectl" -n "$namespace" annotate "$deployment" --overwrite \
      kubernetes.io/change-cause="driftloop rollout: $model v$version ($image)"
    "$kubectl" -n "$namespace" set image "$deployment" serving="$image"
    wait_or_undo
    ;;
  *) usage ;;
esac
