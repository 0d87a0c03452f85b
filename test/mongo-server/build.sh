#!/usr/bin/env bash
# Builds the test MongoDB server jar (target/mongo-server.jar) when it is missing or older than
# pom.xml or a source file. Safe to run from any directory and from several processes at once.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
jar="$dir/target/mongo-server.jar"

stale() {
  [ ! -f "$jar" ] || [ -n "$(find "$dir/pom.xml" "$dir/src" -type f -newer "$jar" -print -quit)" ]
}

stale || exit 0
mkdir -p "$dir/target"
# Concurrent test workers: one builds, the others wait for it and then find the jar current.
exec 9>"$dir/target/.build.lock"
flock 9
stale || exit 0
mvn -q -B -Dstyle.color=never -f "$dir/pom.xml" package -DskipTests
