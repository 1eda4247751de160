#include "experiments/cli.h"

int main(int argc, char** argv) { return qsched::cli::main(argc, argv); }
