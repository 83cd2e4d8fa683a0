# Shared by scripts/demo.sh and the benchmarks: a throwaway Dovecot with
# implicit TLS on 127.0.0.1, a certificate minted with openssl, Maildir
# storage and passwd-file users. Source this file, then:
#   dovecot_setup DIR PORT "user:password ..."   writes config, certs, users
#   dovecot_start DIR PORT                       starts it and waits for the port
#   dovecot_stop DIR                             stops it and waits for the exit
#   dovecot_mail_owner                           uid:gid that owns the Maildirs
#   bench_dovecot BENCH DIR PORT MESSAGES USERS [SHAPE]
#                                                the benchmarks' corpus served
#                                                by a fresh, warmed-up Dovecot
#   measure LABEL COMMAND...                     wall time and peak RSS
#   release_path NAME                            absolute path of a release build
#                                                (honours CARGO_TARGET_DIR)
#   trash PATH... / trash_empty                  delete later, when nothing is timed
#   accounts_csv FILE N                          mailferry's CSV for user1..userN (pwI)
#   mbsync_rc FILE PORT CA MAILDIR N             an mbsyncrc, one channel userI per user

ensure_packages() {
    local need=()
    command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd dovecot-core)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    for p in "$@"; do
        command -v "${p%%=*}" >/dev/null 2>&1 || need+=("${p#*=}")
    done
    if [ ${#need[@]} -gt 0 ]; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
}

dovecot_mail_owner() {
    if [ "$(id -u)" = 0 ]; then echo "65534:65534"; else echo "$(id -u):$(id -g)"; fi
}

dovecot_setup() {
    local dir=$1 port=$2 users=$3
    mkdir -p "$dir"/{run,state,mail,home}
    chmod 755 "$dir" "$dir"/mail "$dir"/home
    # A CA and a leaf certificate for localhost (rustls rejects a
    # certificate that is its own CA).
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mailferry demo CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/leaf.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/leaf.ext" -out "$dir/server.pem" 2>/dev/null
    : > "$dir/passwd"
    for up in $users; do
        echo "${up%%:*}:{PLAIN}${up#*:}::::::" >> "$dir/passwd"
    done
    local internal=dovecot login=dovenull owner
    owner=$(dovecot_mail_owner)
    if [ "$(id -u)" != 0 ]; then internal=$(id -un); login=$(id -un); fi
    chown "$owner" "$dir/mail" "$dir/home" 2>/dev/null || true
    cat > "$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
instance_name = mailferry-$port
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$dir/server.pem
ssl_key = <$dir/server.key
auth_mechanisms = plain login
disable_plaintext_auth = no
first_valid_uid = 0
default_internal_user = $internal
default_login_user = $login
mail_location = maildir:$dir/mail/%u
mail_plugins = \$mail_plugins
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = $dir/passwd
}
userdb {
  driver = static
  args = uid=${owner%%:*} gid=${owner#*:} home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = $port
    ssl = yes
  }
}
protocol imap {
  mail_plugins = \$mail_plugins imap_zlib
  mail_max_userip_connections = 50
}
# Room for the scale benchmark (hundreds of accounts, a few connections
# each): one login and one imap process per connection, as by default.
default_process_limit = 1000
default_client_limit = 4000
service imap-login {
  process_limit = 1000
}
service imap {
  process_limit = 1000
}
service auth {
  client_limit = 5000
}
service anvil {
  client_limit = 5000
}
CONF
}

dovecot_start() {
    local dir=$1 port=$2
    # A file descriptor or two per connection, for up to 1,000 of them.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    dovecot -F -c "$dir/dovecot.conf" </dev/null >"$dir/dovecot.out" 2>&1 &
    echo $! > "$dir/dovecot.pid"
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "dovecot did not start:" >&2
    cat "$dir/dovecot.out" "$dir/dovecot.log" >&2 2>/dev/null || true
    return 1
}

dovecot_stop() {
    local dir=$1 pid
    pid=$(cat "$dir/dovecot.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
}

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    echo 29993
}

# The benchmark corpus (generated once into BENCH, kept between runs)
# served by a fresh Dovecot in DIR, indexes built and files in the page
# cache, so every tool timed after this starts from the same state. SHAPE
# (default $CORPUS_SHAPE, else none) is extra gen-corpus options, e.g.
# "--accounts 50 --folders 20 --small"; without it the corpus is the
# original one (user1..user3) in BENCH/corpus, with it BENCH/corpus-<shape>,
# so shapes do not replace each other. USERS lists every login the server
# needs; every user that has a Maildir in the corpus is warmed up. Sets
# bench_corpus_txt to the corpus's one-line summary file.
bench_dovecot() {
    local bench=$1 dir=$2 port=$3 messages=$4 users=$5 shape=${6:-${CORPUS_SHAPE:-}}
    local name=corpus slug
    if [ -n "$shape" ]; then
        slug=$(printf '%s' "$shape" | tr -s ' ' '_' | tr -cd 'A-Za-z0-9_.')
        name="corpus-$slug"
    fi
    dovecot_stop "$dir" 2>/dev/null || true
    # What an earlier run left to delete (not this run's: trash below),
    # with a sync so that ext4 forgets the deletions sooner; then the last
    # server is set aside.
    local t
    for t in "$(dirname "$dir")"/.trash.* "$bench"/.trash.*; do
        case $t in *".$$."*) ;; *) rm -rf "$t" ;; esac
    done
    sync
    trash "$dir"
    mkdir -p "$dir" "$bench"
    dovecot_setup "$dir" "$port" "$users"
    if [ ! -f "$bench/$name.done.$messages" ]; then
        trash "$bench/$name"
        rm -f "$bench/$name".done.*
        echo "generating $messages messages${shape:+ ($shape)}..." >&2
        # shellcheck disable=SC2086 # the shape is options, split on purpose
        "$(release_path examples/gen-corpus)" "$bench/$name" "$messages" $shape > "$bench/$name.txt"
        touch "$bench/$name.done.$messages"
    fi
    bench_corpus_txt=$bench/$name.txt
    cat "$bench_corpus_txt" >&2
    rm -rf "$dir/mail"
    cp -al "$bench/$name" "$dir/mail" 2>/dev/null || cp -a "$bench/$name" "$dir/mail"
    chown -R "$(dovecot_mail_owner)" "$dir/mail"
    chmod 755 "$dir/mail"
    dovecot_start "$dir" "$port"
    find "$dir/mail" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort > "$dir/corpus-users"
    if [ -s "$dir/corpus-users" ]; then
        # (-F logs an auth error, "userdbs don't support" iterating: harmless)
        doveadm -c "$dir/dovecot.conf" mailbox status -F "$dir/corpus-users" "messages vsize" '*' >/dev/null
    fi
    find "$dir/mail" -type f -path '*/cur/*' -exec cat {} + >/dev/null
}

# Sets paths aside to be deleted by trash_empty once nothing is timed any
# more (an EXIT trap). A rename frees no inode; a deletion would slow the
# next timed run: on an ext4 without a journal (this machine's), creating a
# file within a minute (six, until written back) of many deletions scans
# past every recently deleted inode (ext4's recently_deleted()), so the
# files an earlier run deleted would cost the next tool, seconds per
# 10,000 files. bench_dovecot deletes what an earlier run left.
trashed=()
trash() {
    local p t
    for p; do
        [ -e "$p" ] || continue
        t="$(dirname "$p")/.trash.$(basename "$p").$$.$RANDOM"
        mv "$p" "$t" && trashed+=("$t")
    done
}
trash_empty() {
    [ ${#trashed[@]} -eq 0 ] || rm -rf "${trashed[@]}"
    trashed=()
}

# A release build's absolute path (NAME: mailferry, examples/gen-corpus, ...)
# in $CARGO_TARGET_DIR, else ./target; call from the repository's root.
release_path() {
    local target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$PWD/$target ;; esac
    echo "$target/release/$1"
}

# mailferry's accounts CSV (and the plain fetcher's) for user1..userN,
# password pwI.
accounts_csv() {
    local file=$1 n=$2 i
    {
        printf 'EmailAddress,UserName,Password\n'
        for ((i = 1; i <= n; i++)); do printf 'user%s@example.com,user%s,pw%s\n' $i $i $i; done
    } > "$file"
}

# An mbsyncrc pulling user1..userN over IMAPS into Maildirs under MAILDIR
# (one channel userI each; `Sync Pull`, `Create Near`, its default FSync),
# as scripts/bench-mirror.sh does for three.
mbsync_rc() {
    local file=$1 port=$2 ca=$3 maildir=$4 n=$5 i
    : > "$file"
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$maildir/user$i"
        cat >> "$file" <<RC
IMAPAccount user$i
Host localhost
Port $port
User user$i
Pass pw$i
SSLType IMAPS
CertificateFile $ca

IMAPStore user$i-far
Account user$i

MaildirStore user$i-near
Path $maildir/user$i/
Inbox $maildir/user$i/INBOX
SubFolders Verbatim

Channel user$i
Far :user$i-far:
Near :user$i-near:
Patterns *
Create Near
Sync Pull
SyncState *

RC
    done
}

# Runs a command under GNU time; sets secs_LABEL and rss_LABEL (KiB) and
# keeps its output in $bench/out.LABEL and $bench/err.LABEL. An exit status
# above MEASURE_OK (default 0) stops the script (`MEASURE_OK=1 measure ...`
# for mailferry status, whose 1 means "not everything uploaded yet").
measure() {
    local label=$1 status=0; shift
    /usr/bin/time -f "%e %M" -o "$bench/time.$label" "$@" > "$bench/out.$label" 2> "$bench/err.$label" || status=$?
    if [ "$status" -gt "${MEASURE_OK:-0}" ]; then
        echo "$label failed (exit status $status):" >&2; tail -20 "$bench/err.$label" >&2; exit 1
    fi
    # (GNU time puts "Command exited with non-zero status N" first)
    read -r secs rss < <(tail -1 "$bench/time.$label")
    echo "$label $secs $rss" >&2
    eval "secs_$label=$secs rss_$label=$rss"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) printf "n/a"; else printf "%.2f", a / b }'; }

# "met" or "not met": met VALUE <=|>= TARGET
met() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = op == "<=" ? v <= t : v >= t; printf "%s", ok ? "met" : "not met" }'; }

# A number from mailferry's --json output: the last "KEY": N in FILE (the
# totals come last).
json_number() { grep -o "\"$2\": [0-9.]*" "$1" | tail -1 | grep -o '[0-9.]*$'; }
