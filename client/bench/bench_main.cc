// alibi-bench: see client/bench/bench.h and client/README.md.
#include <iostream>
#include <string>
#include <vector>

#include "client/bench/bench.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return alibi::client::bench::RunBench(args, std::cout, std::cerr);
}
