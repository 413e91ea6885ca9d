// deploy/prometheus/prometheus.yml: promtool accepts it as shipped and as
// rewritten for a local Prometheus (promtool tests skip when it is absent).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/metrics/test_util.h"

namespace alibi::metrics {
namespace {

using test_util::CommandResult;
using test_util::FindInPath;
using test_util::LocalPrometheusConfig;
using test_util::ReadFile;
using test_util::RunCommand;
using test_util::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kShippedConfig =
    std::string(ALIBI_SOURCE_DIR) + "/deploy/prometheus/prometheus.yml";

std::string Shipped() {
  absl::StatusOr<std::string> text = ReadFile(kShippedConfig);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

void ExpectPromtoolAccepts(const std::string& config_path) {
  const std::string promtool = FindInPath("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool is not installed (Debian package `prometheus`, "
                    "see scripts/setup.sh); config not checked";
  }
  const std::string log =
      ::testing::TempDir() + "promtool_" + std::to_string(getpid()) + ".log";
  absl::StatusOr<CommandResult> result = RunCommand(
      {promtool, "check", "config", config_path}, log, absl::Seconds(60));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0) << result->output;
  EXPECT_THAT(result->output, HasSubstr("SUCCESS")) << result->output;
  std::remove(log.c_str());
}

TEST(PrometheusConfigTest, PromtoolAcceptsShippedConfig) {
  ExpectPromtoolAccepts(kShippedConfig);
}

TEST(PrometheusConfigTest, PromtoolAcceptsLocalConfig) {
  absl::StatusOr<std::string> local =
      LocalPrometheusConfig(Shipped(), 19464, "1s");
  ASSERT_TRUE(local.ok()) << local.status();
  const std::string path = ::testing::TempDir() + "prometheus_local_" +
                           std::to_string(getpid()) + ".yml";
  ASSERT_TRUE(WriteFile(path, *local).ok());
  ExpectPromtoolAccepts(path);
  std::remove(path.c_str());
}

TEST(PrometheusConfigTest, LocalConfigRetargetsTheShippedOne) {
  const std::string shipped = Shipped();
  EXPECT_THAT(shipped, HasSubstr("job_name: alibi-serve"));
  absl::StatusOr<std::string> local =
      LocalPrometheusConfig(shipped, 4242, "1s");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_THAT(*local, HasSubstr("\"127.0.0.1:4242\""));
  EXPECT_THAT(*local, HasSubstr("scrape_interval: 1s"));
  EXPECT_THAT(*local, Not(HasSubstr("alibi-server:9464")));
  EXPECT_THAT(*local, Not(HasSubstr("scrape_interval: 5s")));
  EXPECT_THAT(*local, HasSubstr("metrics_path: /metrics"));

  // A config whose shape changed is reported, not silently used.
  std::string moved = shipped;
  moved.replace(moved.find("alibi-server:9464"), 17, "alibi-server:9999");
  EXPECT_EQ(LocalPrometheusConfig(moved, 4242, "1s").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(LocalPrometheusConfig(absl::StrCat(shipped,
                                               "\n# scrape_interval: "
                                               "5s\n"),
                                  4242, "1s")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace alibi::metrics
