// alibi-cli: see client/cli.h and client/README.md.
#include <iostream>
#include <string>
#include <vector>

#include "client/cli.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return alibi::client::RunCli(args, std::cout, std::cerr);
}
