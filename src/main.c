/* kestrel: a virtual machine monitor for Linux KVM. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
