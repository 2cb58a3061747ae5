/* A shared object without drover_plugin_entry: the host must refuse it. */
int not_a_plugin(void);
int not_a_plugin(void)
{
	return 42;
}
