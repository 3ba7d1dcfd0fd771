"""Behind RDS Proxy: proxy mode, in which nothing the ENGINE sends pins a session."""

#: Nothing here is for applications to import: OPTIONS["aurora"]["proxy"] drives it.
__all__: list[str] = []
