#!/usr/bin/env bash
# make demo: the article's story, on a local control plane and Git remote.
#
#   demo.sh        start everything under .demo/, play the story, leave it running
#   demo.sh down   stop everything the demo started and remove .demo/
#
# Three teams push version bumps to main, each from its own clone; Sluice
# tests each commit in order in a namespace of its own, fast-forwards staging
# to the good ones and reverts the one that breaks a contract test.
#
# Environment:
#   SLUICE_DEMO_DIR   state directory (default: .demo at the repository root)
#   SLUICE_BIN        the sluice binary (default: bin/sluice)
#   SLUICE_TOOLS_DIR  the control plane's binaries (default: bin/)
#   DEMO_HEADLESS=1   no pauses between pushes (for tests)
#   DEMO_WAIT=150s    how long to wait for Sluice to drain the queue
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DEMO=${SLUICE_DEMO_DIR:-$ROOT/.demo}
mkdir -p "$(dirname "$DEMO")"
DEMO=$(cd "$(dirname "$DEMO")" && pwd)/$(basename "$DEMO")
BIN=$ROOT/bin
SLUICE=${SLUICE_BIN:-$BIN/sluice}
DEMOCTL=$BIN/sluice-demo
REPO=desired-state
PAUSE=3
[[ ${DEMO_HEADLESS:-} == 1 ]] && PAUSE=0

# Git, for the teams' clones and for the server: none of the host's git
# configuration, hooks, signing or GIT_* variables.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^GIT_' || true)
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$DEMO/gitconfig GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat

if [[ -t 1 ]]; then
	B=$'\e[1m' D=$'\e[2m' C=$'\e[36m' R=$'\e[0m'
else
	B='' D='' C='' R=''
fi
say() { printf '%s\n' "$*"; }
step() { printf '%s» %s%s\n' "$B" "$*" "$R"; }
section() { printf '\n%s== %s ==%s\n' "$B" "$*" "$R"; }
# rel shows a path under the repository relative to it, as people type it.
rel() { case $1 in "$ROOT"/*) printf '%s' "${1#"$ROOT"/}" ;; *) printf '%s' "$1" ;; esac; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

build_democtl() {
	# go build relinks only when a source changed.
	go build -o "$DEMOCTL" ./test/demo/democtl || die "building test/demo/democtl failed"
}

down() {
	[[ -x $DEMOCTL ]] || build_democtl
	"$DEMOCTL" down --dir "$DEMO"
}

# The local Git remote: a bare repository served by git http-backend on
# loopback, seeded with examples/article, main and staging at one commit.
start_git() {
	"$DEMOCTL" git-init --root "$DEMO/git" --home "$DEMO/git-home" --name "$REPO" --protect main,staging
	setsid "$DEMOCTL" git-serve --root "$DEMO/git" --home "$DEMO/git-home" --url-file "$DEMO/run/git.url" \
		</dev/null >"$DEMO/logs/git-server.log" 2>&1 &
	echo $! >"$DEMO/run/git-server.pid"
	for _ in $(seq 100); do
		[[ -s $DEMO/run/git.url ]] && break
		sleep 0.1
	done
	[[ -s $DEMO/run/git.url ]] || die "the Git server did not start: $(tail -5 "$DEMO/logs/git-server.log")"
	URL=$(cat "$DEMO/run/git.url")/$REPO.git

	# The repository is empty: the seed starts as a new one, not a clone.
	local seed=$DEMO/work/platform
	git init --quiet "$seed"
	git -C "$seed" remote add origin "$URL"
	identify "$seed" platform "Platform team"
	cp -R examples/article/. "$seed/"
	git -C "$seed" add -A
	git -C "$seed" commit --quiet -m "Initial desired state"
	git -C "$seed" push --quiet origin HEAD:refs/heads/main HEAD:refs/heads/staging
}

# clone DIR AUTHOR: a team's own clone (see identify).
clone() {
	local dir=$DEMO/work/$1
	git clone --quiet "$URL" "$dir"
	identify "$dir" "$1" "$2"
}

# identify CLONE TEAM AUTHOR: the clone commits as the team's author, fetches
# Sluice's notes and shows them in git log.
identify() {
	git -C "$1" config user.name "$3"
	git -C "$1" config user.email "$2@teams.example"
	git -C "$1" config commit.gpgSign false # people commit here too, with their own config
	git -C "$1" config --add remote.origin.fetch '+refs/notes/*:refs/notes/*'
	git -C "$1" config notes.displayRef refs/notes/sluice
}

write_config() {
	cat >"$DEMO/sluice.yaml" <<-EOF
		# Written by make demo: Sluice gating staging of the local Git remote.
		# See examples/article/sluice.yaml for a real forge.
		repository:
		  url: $URL
		  sourceBranch: main
		  author: {name: Sluice, email: sluice@demo.example}
		pollInterval: 2s
		gates:
		  - name: staging
		    path: environments/staging
		    targetBranch: staging
		    timeouts: {apply: 30s, health: 60s, tests: 60s}
		    # A failed candidate's namespace is kept for a while, to look at.
		    onFailure: {revert: true, keepNamespace: 10m}
		    retry: {initialBackoff: 1s, maxBackoff: 10s}
	EOF
}

# Sluice runs detached, so it keeps running after make demo returns. Its
# progress lines go to .demo/sluice.log, which the demo shows as it goes;
# its structured logs to .demo/logs/sluice-slog.log.
start_sluice() {
	setsid "$SLUICE" run --config "$DEMO/sluice.yaml" --kubeconfig "$KUBECONFIG" --progress always \
		</dev/null >"$DEMO/sluice.log" 2>"$DEMO/logs/sluice-slog.log" &
	echo $! >"$DEMO/run/sluice.pid"
	tail -n +1 -F "$DEMO/sluice.log" 2>/dev/null &
	TAIL=$!
	echo "$TAIL" >"$DEMO/run/tail.pid"
}

on_exit() {
	local code=$?
	stop_tail
	if ((code != 0)); then
		printf '\ndemo: failed. Logs: %s/logs/ and %s/sluice.log; make demo-down removes everything.\n' \
			"$(rel "$DEMO")" "$(rel "$DEMO")" >&2
	fi
}

stop_tail() {
	if [[ -n ${TAIL:-} ]]; then
		kill "$TAIL" 2>/dev/null || true
		wait "$TAIL" 2>/dev/null || true
		rm -f "$DEMO/run/tail.pid"
		TAIL=
	fi
}

# bump TEAM SERVICE TAG [WHY]: the team sets the service's image tag in
# staging, commits and pushes to main, pulling first like anyone would
# (Sluice may have pushed a revert meanwhile).
bump() {
	local dir=$DEMO/work/$1 svc=$2 tag=$3 why=${4:-}
	local team msg="bump ${svc^^} to $tag"
	team=$(git -C "$dir" config user.name)
	printf '%s%s» %s: %s%s%s\n' "$B" "$C" "${team% team}" "$msg" "$R" "${why:+  $D($why)$R}"
	git -C "$dir" pull --quiet --rebase
	sed -i "s|\(image: .*/$svc:\).*|\1$tag|" "$dir/environments/staging/versions/$svc.yaml"
	git -C "$dir" commit --quiet -am "$msg"
	for _ in 1 2 3 4 5; do
		git -C "$dir" push --quiet origin HEAD:main 2>/dev/null && return 0
		git -C "$dir" pull --quiet --rebase
	done
	die "$team could not push $msg"
}

# restart_sluice: stop the Sluice this demo started (by its pid) and start
# it again, on the config as it is now.
restart_sluice() {
	local pid
	pid=$(cat "$DEMO/run/sluice.pid")
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	start_sluice
}

# promote_and_preview OBSERVER: the article's other half. shared-dev gets a
# gate of its own that promotes what it passed to staging; Berlin tries A v4
# in shared-dev, Sluice promotes it and staging tests the promotion. Then
# London previews B v2 from its working tree: staging plus one change.
promote_and_preview() {
	local obs=$1
	section "Shared development → staging: promotion"
	say "${D}shared-dev gets a gate that promotes what it passed: promote: {to: staging, paths: [\"versions/*.yaml\"]}${R}"
	git -C "$obs" push --quiet origin origin/main:refs/heads/shared-dev
	cat >>"$DEMO/sluice.yaml" <<-EOF
		    previews: {ttl: 1h}
		  - name: shared-dev
		    path: environments/shared-dev
		    targetBranch: shared-dev
		    timeouts: {apply: 30s, health: 60s, tests: 60s}
		    retry: {initialBackoff: 1s, maxBackoff: 10s}
		    promote: {to: staging, paths: ["versions/*.yaml"]}
	EOF
	step "Restarting Sluice with the shared-dev gate"
	restart_sluice
	local dir=$DEMO/work/berlin
	printf '%s%s» Berlin: try A v4 in shared-dev%s\n' "$B" "$C" "$R"
	git -C "$dir" pull --quiet --rebase
	sed -i "s|\(image: .*/a:\).*|\1v4|" "$dir/environments/shared-dev/versions/a.yaml"
	git -C "$dir" commit --quiet -am "try A v4 in shared-dev"
	git -C "$dir" push --quiet origin HEAD:main
	step "Waiting for shared-dev to pass it, Sluice to promote it, and staging to test the promotion"
	local promoted=
	for _ in $(seq 240); do
		git -C "$obs" fetch --quiet origin
		promoted=$(git -C "$obs" log --format=%H --grep='^Sluice-Promoted-From:' -1 origin/main)
		[[ -n $promoted ]] && break
		sleep 0.5
	done
	[[ -n $promoted ]] || die "Sluice did not promote A v4 to staging"
	"$DEMOCTL" wait-drained --sluice "$SLUICE" --config "$DEMO/sluice.yaml" --pid-file "$DEMO/run/sluice.pid" --timeout "${DEMO_WAIT:-150s}"
	sleep 0.5
	stop_tail
	grep -h 'msg=promoted' "$DEMO/logs/sluice-slog.log" | tail -1 | sed 's/^/  /'
	git -C "$obs" fetch --quiet origin
	section "The promotion Sluice pushed: git show --stat ${promoted:0:7}"
	git -C "$obs" show --stat --format=fuller --notes=sluice "$promoted"

	section "A preview: tested staging plus London's working tree"
	local lon=$DEMO/work/london
	git -C "$lon" pull --quiet --rebase
	sed -i "s|\(image: .*/b:\).*|\1v2|" "$lon/environments/staging/versions/b.yaml"
	say "${D}London edits environments/staging/versions/b.yaml to B v2 and does not commit${R}"
	say "${D}sluice preview up london-b2 --gate staging --dir $(rel "$lon")${R}"
	"$SLUICE" preview up london-b2 --config "$DEMO/sluice.yaml" --kubeconfig "$KUBECONFIG" --gate staging --dir "$lon" --owner london
	say "${D}sluice preview list${R}"
	"$SLUICE" preview list --config "$DEMO/sluice.yaml" --kubeconfig "$KUBECONFIG"
	say "${D}kubectl get deployments,services -n sluice-preview-london-b2: B runs, every other Service routes to staging's${R}"
	"${SLUICE_TOOLS_DIR:-$BIN}/kubectl" --kubeconfig "$KUBECONFIG" get deployments,services -n sluice-preview-london-b2
	git -C "$lon" checkout --quiet -- environments/staging/versions/b.yaml
}

up() {
	local begin=$SECONDS
	say "${B}Sluice demo: the article's story on a local cluster and Git remote${R}"
	say "${D}state in $(rel "$DEMO")/ — make demo-down removes it${R}"
	if [[ ! -x $SLUICE ]]; then die "$SLUICE is missing: run make build"; fi
	step "Building the demo helper $(rel "$DEMOCTL") (the first build takes a minute)"
	build_democtl
	if [[ -e $DEMO ]]; then
		step "Stopping the previous demo"
		down
	fi
	mkdir -p "$DEMO/run" "$DEMO/logs" "$DEMO/work"
	printf '[init]\n\tdefaultBranch = main\n[commit]\n\tgpgSign = false\n[advice]\n\tdetachedHead = false\n' >"$GIT_CONFIG_GLOBAL"
	trap on_exit EXIT

	step "Starting a control plane: etcd, kube-apiserver, controller-manager, scheduler, 2 kwok nodes"
	local t=$SECONDS
	KUBECONFIG=$("$DEMOCTL" cluster-up --dir "$DEMO/cluster" --name sluice-demo --nodes 2)
	ln -s "$KUBECONFIG" "$DEMO/kubeconfig"
	say "  ready in $((SECONDS - t))s; kubeconfig: $(rel "$DEMO")/kubeconfig"

	step "Starting a Git server on loopback, seeding $REPO from examples/article"
	start_git
	say "  $URL: main and staging at $(git -C "$DEMO/work/platform" log -1 --format='%h "%s"')"
	clone berlin "Berlin team"
	clone newyork "New York team"
	clone london "London team"
	say "  clones of the Berlin, New York and London teams in $(rel "$DEMO")/work/"

	write_config
	step "Starting Sluice: $(rel "$SLUICE") run --config $(rel "$DEMO")/sluice.yaml"
	start_sluice
	sleep "$PAUSE"

	echo
	bump berlin a v3
	sleep "$PAUSE"
	bump newyork z v1
	sleep "$PAUSE"
	# New York pushes right behind London, as in the article: its commit is
	# queued behind the bad one, and tested without it.
	bump london b v4 "A's contract test accepts B v1 to v3 only"
	bump newyork z v2
	step "Waiting for Sluice to drain the queue"
	"$DEMOCTL" wait-drained --sluice "$SLUICE" --config "$DEMO/sluice.yaml" --pid-file "$DEMO/run/sluice.pid" --timeout "${DEMO_WAIT:-150s}"
	sleep 0.5 # the last lines reach the terminal
	stop_tail

	section "sluice status --config $(rel "$DEMO")/sluice.yaml"
	"$SLUICE" status --config "$DEMO/sluice.yaml"

	local obs=$DEMO/work/berlin
	git -C "$obs" fetch --quiet origin # main, staging and the notes
	git -C "$obs" merge --quiet --ff-only origin/main
	section "main and staging, with Sluice's verdict notes (in $(rel "$obs"))"
	say "${D}git log --graph --oneline --decorate --notes=sluice origin/main origin/staging${R}"
	git -C "$obs" log --graph --oneline --decorate --notes=sluice origin/main origin/staging

	local revert
	revert=$(git -C "$obs" log --format=%H --grep='^Sluice-Rejected:' -1 origin/main)
	[[ -n $revert ]] || die "no revert commit by Sluice on main"
	section "The revert Sluice pushed: git show --stat ${revert:0:7}"
	git -C "$obs" show --stat --format=fuller --no-notes "$revert"

	promote_and_preview "$obs"

	section "What to try next"
	local DOWN=
	[[ $DEMO == "$ROOT/.demo" ]] || DOWN="SLUICE_DEMO_DIR=$DEMO "
	cat <<-EOF
		  Push a bump of your own and watch Sluice test it: edit a tag in
		  environments/staging/versions/{a,b,z}.yaml of a team's clone, commit and push.
		    cd $(rel "$DEMO")/work/london && git pull --rebase
		    sed -i 's/b:v3/b:v2/' environments/staging/versions/b.yaml
		    git commit -am "bump B to v2" && git push
		    tail -f $(rel "$DEMO")/sluice.log
		  Look around:
		    $(rel "$SLUICE") status --config $(rel "$DEMO")/sluice.yaml
		    KUBECONFIG=$(rel "$DEMO")/kubeconfig $(rel "$BIN")/kubectl get namespaces   # a failed candidate's stays 10m
		  Promote by hand, and remove the preview:
		    $(rel "$SLUICE") promote --config $(rel "$DEMO")/sluice.yaml --from shared-dev --to staging a
		    $(rel "$SLUICE") preview down london-b2 --config $(rel "$DEMO")/sluice.yaml --kubeconfig $(rel "$DEMO")/kubeconfig

		Sluice, the Git server and the cluster keep running. Stop them all and remove $(rel "$DEMO")/ with:
		    ${DOWN}make demo-down
	EOF
	say "${D}(demo took $((SECONDS - begin))s)${R}"
}

case ${1:-up} in
up) up ;;
down)
	if [[ ! -e $DEMO ]]; then
		say "Nothing to stop: $(rel "$DEMO") does not exist."
		exit 0
	fi
	down
	say "Stopped Sluice, the Git server and the cluster, and removed $(rel "$DEMO")/: no process of the demo is left."
	;;
*) die "usage: demo.sh [up|down]" ;;
esac
