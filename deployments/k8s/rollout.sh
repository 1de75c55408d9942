#!/usr/bin/env bash
# Put a model version's serving image into Kubernetes: the `kubectl set image` path, plus a render for installs.
#
#   rollout.sh render VERSION      print every manifest, the image set to <prefix>/<model>-serving:v<VERSION>
#   rollout.sh apply VERSION       render | kubectl apply: the first install, or after editing the manifests
#   rollout.sh set-image VERSION   kubectl set image on the running Deployment: a new model version
#   rollout.sh render-argo VERSION the same with ../k8s-argo: an Argo Rollouts canary, its analysis, an autoscaler
#   rollout.sh apply-argo VERSION  render-argo | kubectl apply, then wait for the Rollout to be healthy
#   rollout.sh canary VERSION      a new model version through the Argo canary; rolled back when its analysis fails
#
# apply and set-image wait for the rollout (kubectl rollout status) and undo it when it does not complete. canary
# waits for the Rollout to promote the version (Healthy on it) or abort it (its analysis failed, or CANARY_TIMEOUT
# passed: then this script aborts it); an aborted canary's image is taken out of the Deployment again.
# Environment: DRIFTLOOP_MODEL_NAME (churn), DRIFTLOOP_IMAGE_PREFIX (driftloop, e.g. registry.example.com/driftloop),
# ROLLOUT_TIMEOUT (180s), CANARY_TIMEOUT (900 seconds), POLL_SECONDS (5), KUBECTL (kubectl), and kubectl's own
# (KUBECONFIG, the current context).
set -euo pipefail

usage() {
  sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//' >&2
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
rollout=rollout.argoproj.io/driftloop-serving
timeout=${ROLLOUT_TIMEOUT:-180s}
canary_timeout=${CANARY_TIMEOUT:-900}
poll=${POLL_SECONDS:-5}

render() {
  # $1: the directory under deployments/ to render (k8s, or k8s-argo, which builds on k8s)
  local overlay
  overlay=$(mktemp -d)
  # A copy rather than an overlay that points back here: kustomize refuses absolute paths to a base.
  mkdir "$overlay/k8s" "$overlay/k8s-argo"
  cp "$here"/*.yaml "$overlay/k8s/"
  cp "$here"/../k8s-argo/*.yaml "$overlay/k8s-argo/"
  cat >>"$overlay/$1/kustomization.yaml" <<YAML
images:
  - name: driftloop/churn-serving
    newName: $repository
    newTag: v$version
YAML
  "$kubectl" kustomize "$overlay/$1" || { rm -rf "$overlay"; return 1; }
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

rollout_field() {
  "$kubectl" -n "$namespace" get "$rollout" -o jsonpath="$1"
}

# Until the Rollout promotes the new template (Healthy, on a stable ReplicaSet other than $1) or aborts it.
wait_for_canary() {
  local before=$1 waited=0 phase abort stable
  while :; do
    phase=$(rollout_field '{.status.phase}')
    abort=$(rollout_field '{.status.abort}')
    stable=$(rollout_field '{.status.stableRS}')
    if [ "$abort" = true ] || [ "$phase" = Degraded ]; then
      echo "rollout.sh: the canary of $image was aborted: $(rollout_field '{.status.message}')" >&2
      return 1
    fi
    if [ "$phase" = Healthy ] && [ -n "$stable" ] && [ "$stable" != "$before" ]; then
      return 0
    fi
    if [ "$waited" -ge "$canary_timeout" ]; then
      echo "rollout.sh: the canary of $image did not finish within ${canary_timeout}s; aborting it" >&2
      "$kubectl" -n "$namespace" patch "$rollout" --subresource=status --type=merge -p '{"status":{"abort":true}}'
      return 1
    fi
    sleep "$poll"
    waited=$((waited + poll))
  done
}

canary() {
  local previous before
  previous=$("$kubectl" -n "$namespace" get "$deployment" -o jsonpath='{.spec.template.spec.containers[?(@.name=="serving")].image}')
  if [ "$previous" = "$image" ]; then
    echo "rollout.sh: $image serves $rollout already"
    return
  fi
  before=$(rollout_field '{.status.stableRS}')
  "$kubectl" -n "$namespace" annotate "$deployment" --overwrite \
    kubernetes.io/change-cause="driftloop canary: $model v$version ($image)"
  # The Rollout runs the Deployment's pod template (workloadRef): a new image there is a new canary.
  "$kubectl" -n "$namespace" set image "$deployment" serving="$image"
  if wait_for_canary "$before"; then
    echo "rollout.sh: $image serves $rollout (canary promoted)"
    return
  fi
  # Aborted: the stable pods serve everything again. The old image back in the template makes the Rollout
  # healthy on them, instead of retrying the failed version at the next change.
  "$kubectl" -n "$namespace" set image "$deployment" serving="$previous"
  echo "rollout.sh: rolled back to $previous" >&2
  exit 1
}

case $action in
  render) render k8s ;;
  render-argo) render k8s-argo ;;
  apply)
    render k8s | "$kubectl" apply -f -
    wait_or_undo
    ;;
  apply-argo)
    render k8s-argo | "$kubectl" apply -f -
    "$kubectl" -n "$namespace" wait "$rollout" --for=jsonpath='{.status.phase}'=Healthy --timeout="$timeout"
    echo "rollout.sh: $image serves $rollout"
    ;;
  set-image)
    # Annotate first: the Deployment copies change-cause onto the ReplicaSet that `set image` creates, so
    # `kubectl rollout history` names the model version of each revision.
    "$kubectl" -n "$namespace" annotate "$deployment" --overwrite \
      kubernetes.io/change-cause="driftloop rollout: $model v$version ($image)"
    "$kubectl" -n "$namespace" set image "$deployment" serving="$image"
    wait_or_undo
    ;;
  canary) canary ;;
  *) usage ;;
esac
