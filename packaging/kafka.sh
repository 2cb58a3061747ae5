#!/usr/bin/env bash
# kafka: a real Apache Kafka broker on this machine, for trying drover on a
# real broker and for the tests that prove its delivery guarantees.
#
#   packaging/kafka.sh fetch                  download Kafka (Maven Central, cached)
#   packaging/kafka.sh start [--port P] [--dir D] [--topics] [--auto-create] [--fresh]
#                                             format KRaft storage (first time), start
#                                             a combined broker+controller on 127.0.0.1:P
#                                             (default 19092; 0 picks a free port) and
#                                             P+1, wait until it answers; --topics creates
#                                             drover's default topics; --auto-create lets
#                                             producers create topics (4 partitions);
#                                             --fresh wipes the data of an earlier run
#   packaging/kafka.sh stop [--dir D]         controlled shutdown (KILL after 60 s)
#   packaging/kafka.sh status [--dir D]       prints the bootstrap address, exit 1 if down
#   packaging/kafka.sh topic NAME [PARTITIONS] [--dir D]
#                                             creates a topic if missing (default 4 partitions)
#
# D (default ~/.cache/drover/kafka-run) holds server.properties, the data, the
# log (kafka.log) and the pid. The jars go to ~/.cache/drover/kafka-<version>
# and Maven's own cache (~/.m2): after the first fetch nothing is downloaded.
# Environment: KAFKA_VERSION (default 4.1.1), KAFKA_HEAP (default 512m).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=${KAFKA_VERSION:-4.1.1}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/drover
libs=$cache/kafka-$version/libs
dir=$cache/kafka-run
port=19092
with_topics=false
auto_create=false
is_fresh=false

die() {
	echo "kafka: $*" >&2
	exit 1
}

usage() {
	sed -n '2,24s/^# \{0,1\}//p' "$0"
}

# ---------------------------------------------------------------- fetch

fetch() {
	[ -f "$libs/.complete" ] && return 0
	command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian package maven)"
	command -v java >/dev/null 2>&1 || die "java not found (Kafka 4 needs Java 17 or newer)"
	local work
	work=$(mktemp -d)
	# The pom names what the broker and its tools need at run time; Maven
	# resolves the rest. log4j's slf4j 1.x binding matches Kafka's slf4j-api.
	cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.drover</groupId>
  <artifactId>kafka-local</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
	echo "kafka: fetching Apache Kafka $version from Maven Central"
	rm -rf "$libs"
	mkdir -p "$libs"
	if ! (cd "$work" && mvn -q -B dependency:copy-dependencies \
		-DoutputDirectory="$libs" -DincludeScope=runtime); then
		rm -rf "$work" "$libs"
		die "could not fetch Kafka $version with Maven"
	fi
	rm -rf "$work"
	touch "$libs/.complete"
}

java_run() {
	java -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" "$@"
}

# ---------------------------------------------------------------- status

pid_of() {
	local pid
	[ -f "$dir/kafka.pid" ] || return 1
	pid=$(cat "$dir/kafka.pid")
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$pid" 2>/dev/null || return 1
	grep -qa 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

bootstrap() {
	sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$dir/server.properties"
}

answers() {
	kcat -b "$1" -L -m 2 2>/dev/null | grep -q '^ *1 brokers:'
}

# ---------------------------------------------------------------- start/stop

write_config() {
	mkdir -p "$dir/data"
	local cport
	cport=$((port + 1))
	cat >"$dir/server.properties" <<EOF
# Written by packaging/kafka.sh: one combined KRaft broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=$auto_create
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Offset commits are appended at once: Kafka's default (10 ms) adds that much
# to every commit, and drover starts a run only after its commit (README).
group.coordinator.append.linger.ms=0
EOF
	cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
EOF
}

start() {
	local pid
	if pid=$(pid_of); then
		echo "kafka: already running (pid $pid) at $(bootstrap)"
		return 0
	fi
	fetch
	if $is_fresh; then
		rm -rf "$dir/data" "$dir/kafka.log"
	fi
	if [ ! -f "$dir/data/meta.properties" ]; then
		write_config
		local id
		id=$(java_run kafka.tools.StorageTool random-uuid) || die "could not make a cluster id"
		java_run kafka.tools.StorageTool format --standalone -t "$id" \
			-c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
			die "formatting the KRaft storage failed: $(cat "$dir/format.log")"
	else
		# Existing storage: keep its cluster and data; the port and the
		# options may change.
		write_config
	fi
	local addr
	addr=$(bootstrap)
	if answers "$addr"; then
		die "something already answers at $addr (another broker?); pick another --port"
	fi
	# setsid: the broker is not in the caller's process group, so a test
	# runner's signals to its group do not reach it.
	setsid java -Xms128m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" \
		kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
	echo $! >"$dir/kafka.pid"
	local end=$((SECONDS + 90))
	until answers "$addr"; do
		if ! pid_of >/dev/null; then
			tail -n 20 "$dir/kafka.log" >&2
			die "the broker exited while starting (log: $dir/kafka.log)"
		fi
		[ "$SECONDS" -lt "$end" ] || die "the broker did not answer at $addr within 90 s"
		sleep 0.3
	done
	echo "kafka: running (pid $(cat "$dir/kafka.pid")) at $addr"
	if $with_topics; then
		topic drover.events 4
		topic drover.results 1
		topic drover.dead-letter 1
	fi
}

stop() {
	local pid
	if ! pid=$(pid_of); then
		echo "kafka: not running"
		rm -f "$dir/kafka.pid"
		return 0
	fi
	kill -TERM "$pid"
	local end=$((SECONDS + 60))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "kafka: no clean shutdown within 60 s; killing" >&2
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	rm -f "$dir/kafka.pid"
	echo "kafka: stopped"
}

topic() {
	local name=$1 partitions=${2:-4} addr out
	pid_of >/dev/null || die "not running (start it first)"
	addr=$(bootstrap)
	out=$(java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" \
		--create --if-not-exists --topic "$name" --partitions "$partitions" \
		--replication-factor 1 2>&1) || die "creating topic $name failed: $out"
	echo "kafka: topic $name ($partitions partitions)"
}

# ---------------------------------------------------------------- main

[ $# -ge 1 ] || {
	usage >&2
	exit 2
}
cmd=$1
shift
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--port)
		port=${2:?--port needs a value}
		shift
		;;
	--dir)
		dir=${2:?--dir needs a value}
		shift
		;;
	--topics) with_topics=true ;;
	--auto-create) auto_create=true ;;
	--fresh) is_fresh=true ;;
	-h | --help)
		usage
		exit 0
		;;
	-*) die "unknown option '$1'" ;;
	*) args+=("$1") ;;
	esac
	shift
done
case "$port" in '' | *[!0-9]*) die "--port must be a number" ;; esac
if [ "$port" = 0 ]; then
	# Two free neighbouring ports (broker, controller).
	port=$(python3 -c '
import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
')
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case "$cmd" in
fetch) fetch ;;
start) start ;;
stop) stop ;;
status)
	pid_of >/dev/null || {
		echo "kafka: not running"
		exit 1
	}
	bootstrap
	;;
topic)
	[ ${#args[@]} -ge 1 ] || die "topic needs a NAME"
	topic "${args[@]}"
	;;
*)
	usage >&2
	exit 2
	;;
esac
