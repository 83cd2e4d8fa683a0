# Shared by scripts/demo.sh and the benchmarks: a throwaway Dovecot with
# implicit TLS on 127.0.0.1, a certificate minted with openssl, Maildir
# storage and passwd-file users. Source this file, then:
#   dovecot_setup DIR PORT "user:password ..."   writes config, certs, users
#   dovecot_start DIR PORT                       starts it and waits for the port
#   dovecot_stop DIR                             stops it and waits for the exit
#   dovecot_mail_owner                           uid:gid that owns the Maildirs
#   bench_dovecot BENCH DIR PORT MESSAGES USERS  the benchmarks' corpus served
#                                                by a fresh, warmed-up Dovecot
#   measure LABEL COMMAND...                     wall time and peak RSS

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
CONF
}

dovecot_start() {
    local dir=$1 port=$2
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

# The benchmark corpus (generated once into BENCH/corpus, kept between runs)
# served by a fresh Dovecot in DIR, indexes built and files in the page
# cache, so every tool timed after this starts from the same state. The
# corpus holds user1..user3; USERS lists every login the server needs.
bench_dovecot() {
    local bench=$1 dir=$2 port=$3 messages=$4 users=$5
    dovecot_stop "$dir" 2>/dev/null || true
    rm -rf "$dir"
    mkdir -p "$dir"
    dovecot_setup "$dir" "$port" "$users"
    if [ ! -f "$bench/corpus.done.$messages" ]; then
        rm -rf "$bench/corpus" "$bench"/corpus.done.*
        echo "generating $messages messages..." >&2
        target/release/examples/gen-corpus "$bench/corpus" "$messages" > "$bench/corpus.txt"
        touch "$bench/corpus.done.$messages"
    fi
    cat "$bench/corpus.txt" >&2
    rm -rf "$dir/mail"
    cp -al "$bench/corpus" "$dir/mail" 2>/dev/null || cp -a "$bench/corpus" "$dir/mail"
    chown -R "$(dovecot_mail_owner)" "$dir/mail"
    chmod 755 "$dir/mail"
    dovecot_start "$dir" "$port"
    for u in user1 user2 user3; do
        doveadm -c "$dir/dovecot.conf" mailbox status -u "$u" "messages vsize" '*' >/dev/null
    done
    find "$dir/mail" -type f -path '*/cur/*' -exec cat {} + >/dev/null
}

# Runs a command under GNU time; sets secs_LABEL and rss_LABEL (KiB) and
# keeps its output in $bench/out.LABEL and $bench/err.LABEL.
measure() {
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$bench/time.$label" "$@" > "$bench/out.$label" 2> "$bench/err.$label" || {
        echo "$label failed:" >&2; tail -20 "$bench/err.$label" >&2; exit 1; }
    read -r secs rss < "$bench/time.$label"
    echo "$label $secs $rss" >&2
    eval "secs_$label=$secs rss_$label=$rss"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
