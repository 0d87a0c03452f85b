#!/usr/bin/env bash
# Builds the test MongoDB server jar (target/mongo-server.jar) when it is missing or out of date.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
jar="$dir/target/mongo-server.jar"
if [ -f "$jar" ] && [ "$jar" -nt "$dir/pom.xml" ] && [ "$jar" -nt "$dir/src/main/java/dev/agentevents/testmongo/Main.java" ]; then
  exit 0
fi
mvn -q -B -f "$dir/pom.xml" package -DskipTests
