from selfens.data.base import ParaphraseDataModule
from selfens.data.batch import Example, ParaphraseBatch, collate
from selfens.data.jsonl import JsonlQuestions
from selfens.data.lm_eval_task import LmEvalTask
from selfens.data.myriadlama import MyriadLAMA
from selfens.data.pararel import ParaRel
from selfens.data.records import DataError, Record
from selfens.data.webquestions import WebQuestions

__all__ = [
    "DataError",
    "Example",
    "JsonlQuestions",
    "LmEvalTask",
    "MyriadLAMA",
    "ParaRel",
    "ParaphraseBatch",
    "ParaphraseDataModule",
    "Record",
    "WebQuestions",
    "collate",
]
