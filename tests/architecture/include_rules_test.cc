// The layering rules of the source tree, checked on every #include of the
// sources themselves (README, Architecture):
// - common/ is the floor: it includes nothing of the project but itself;
// - nothing under kernels/ includes server/;
// - kv_cache/ and scheduler/ are pure host logic: nothing from kernels/,
//   model/, engine/, frontend/ or a transport;
// - engine.h, the API the frontend and transports see, names no model,
//   tokenizer, backend, scheduler or KV-cache header;
// - the frontend sees the engine only through engine.h (engine_core.h is for
//   main.cc and tests), and nothing of kernels/, model/, the scheduler or a
//   transport;
// - the transports (rpc/, http/) see the engine API, the frontend, their
//   wire format, the HTTP core, the metrics recording API and common/ only.
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace alibi {
namespace {

namespace fs = std::filesystem;

struct Include {
  std::string file;  // relative to the source root
  std::string target;
};

std::vector<Include> ProjectIncludes(const std::string& dir) {
  const fs::path root(ALIBI_SOURCE_DIR);
  std::vector<Include> out;
  const std::regex include_re(R"re(^\s*#\s*include\s*"([^"]+)")re");
  for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".h" && ext != ".cc" && ext != ".cu" && ext != ".cuh") continue;
    std::ifstream in(entry.path());
    std::string line;
    std::smatch m;
    while (std::getline(in, line)) {
      if (std::regex_search(line, m, include_re)) {
        out.push_back({fs::relative(entry.path(), root).string(), m[1]});
      }
    }
  }
  return out;
}

bool StartsWithAny(const std::string& s, const std::vector<std::string>& v) {
  for (const std::string& p : v) {
    if (absl::StartsWith(s, p)) return true;
  }
  return false;
}

// Whether `target` is one of the project's own headers (generated protos
// included), as opposed to a library's (absl/, grpcpp/, ...).
bool IsProjectHeader(const std::string& target) {
  return StartsWithAny(target, {"common/", "kernels/", "server/", "client/",
                                "tools/", "tests/", "alibi/", "grpc/health/"});
}

// Every project include of `dir` must start with one of `allowed`; prints
// the offenders.
void ExpectOnly(const std::string& dir,
                const std::vector<std::string>& allowed) {
  int checked = 0;
  for (const Include& inc : ProjectIncludes(dir)) {
    if (!IsProjectHeader(inc.target)) continue;
    ++checked;
    EXPECT_TRUE(StartsWithAny(inc.target, allowed))
        << inc.file << " includes \"" << inc.target << "\"";
  }
  EXPECT_GT(checked, 0) << "no includes found under " << dir;
}

void ExpectNone(const std::string& dir,
                const std::vector<std::string>& forbidden) {
  for (const Include& inc : ProjectIncludes(dir)) {
    EXPECT_FALSE(StartsWithAny(inc.target, forbidden))
        << inc.file << " includes \"" << inc.target << "\"";
  }
}

TEST(IncludeRulesTest, CommonIsTheFloor) { ExpectOnly("common", {"common/"}); }

TEST(IncludeRulesTest, KernelsIncludeNothingFromServer) {
  ExpectNone("kernels", {"server/"});
}

TEST(IncludeRulesTest, KvCacheAndSchedulerArePureHostLogic) {
  ExpectOnly("server/kv_cache", {"common/", "server/kv_cache/"});
  ExpectOnly("server/scheduler",
             {"common/", "server/kv_cache/", "server/scheduler/"});
}

TEST(IncludeRulesTest, EngineApiIsNarrow) {
  for (const Include& inc : ProjectIncludes("server/engine")) {
    if (inc.file != "server/engine/engine.h" || !IsProjectHeader(inc.target)) {
      continue;
    }
    EXPECT_TRUE(StartsWithAny(inc.target, {"common/"}))
        << "engine.h includes \"" << inc.target << "\"";
  }
}

TEST(IncludeRulesTest, FrontendSeesTheEngineApiOnly) {
  ExpectOnly("server/frontend", {"common/", "server/engine/engine.h",
                                 "server/frontend/", "server/tokenizer/"});
}

TEST(IncludeRulesTest, TransportsAreThin) {
  const std::vector<std::string> shared = {
      "common/", "server/engine/engine.h", "server/frontend/",
      "server/metrics/metrics.h", "server/http_server/"};
  std::vector<std::string> rpc = shared;
  rpc.insert(rpc.end(), {"server/rpc/", "alibi/v1/", "grpc/health/"});
  ExpectOnly("server/rpc", rpc);
  if (fs::exists(fs::path(ALIBI_SOURCE_DIR) / "server/http")) {
    std::vector<std::string> http = shared;
    http.push_back("server/http/");
    ExpectOnly("server/http", http);
  }
}

}  // namespace
}  // namespace alibi
