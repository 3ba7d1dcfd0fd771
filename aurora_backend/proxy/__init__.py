"""Behind RDS Proxy: proxy mode, in which nothing the ENGINE sends pins a session."""
