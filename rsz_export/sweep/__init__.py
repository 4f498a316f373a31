"""The accuracy sweep: accuracy and latency per engine, preprocessing policy and size on a labeled folder
(``accuracy``) and its reports (``report``)."""
