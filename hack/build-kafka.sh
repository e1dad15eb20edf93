#!/usr/bin/env bash
# Resolves the test bed's Kafka broker from Maven Central: org.apache.kafka:kafka_2.13 (the
# broker, `kafka.Kafka`, and `kafka.tools.StorageTool`) with its runtime dependencies, copied
# by Maven into a cache folder keyed by the version, so a warm cache returns at once (Maven's
# own repository keeps the downloads too). `--is-cached` only tells whether the cache is warm
# (exit status 0). Prints the folder; its libs/ is the broker's class path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${CONVEYOR_CACHE:-$HOME/.cache/conveyor}
out="$cache_root/testbed/kafka-$KAFKA_VERSION"

if [ "${1:-}" = "--is-cached" ]; then
  [ -f "$out/.complete" ]
  exit
fi
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

command -v java >/dev/null || { echo "Java 17 or newer is needed for the test bed's Kafka (make testbed-deps)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven is needed to fetch the test bed's Kafka (make testbed-deps)" >&2; exit 1; }
mkdir -p "$cache_root/testbed"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.conveyor.testbed</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- log4j 1's API (reload4j) for the broker's slf4j: one properties file configures it -->
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
POM
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$work/libs" >&2
rm -rf "$out"
mkdir -p "$out"
mv "$work/libs" "$out/libs"
touch "$out/.complete"
echo "fetched Kafka $KAFKA_VERSION ($(ls "$out/libs" | wc -l) jars) in $(( $(date +%s) - started ))s" >&2
echo "$out"
