"""The form templates every tenant starts with (version 1 of each code; a tenant's edits are later versions).

Option codes are stable identifiers (pinyin or English); labels are what staff see and may be re-worded
in a new version without changing the meaning of stored answers. `clinician_remark` fields are staff-only:
the patient sees the rest of a signed record in the mini-program, never these.
"""

from __future__ import annotations

from typing import Any


def _opts(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"code": code, "label": label} for code, label in pairs]


TONGUE_BODY = _opts(("pale", "淡白舌"), ("pale_red", "淡红舌"), ("red", "红舌"), ("crimson", "绛舌"),
                    ("purple", "紫舌"), ("dusky", "暗舌"), ("enlarged", "胖大舌"), ("thin", "瘦薄舌"),
                    ("tooth_marked", "齿痕舌"), ("fissured", "裂纹舌"), ("stiff", "强硬舌"))
TONGUE_COATING = _opts(("thin_white", "薄白苔"), ("white_thick", "白厚苔"), ("yellow", "黄苔"),
                       ("yellow_greasy", "黄腻苔"), ("white_greasy", "白腻苔"), ("grey_black", "灰黑苔"),
                       ("peeled", "剥苔"), ("little", "少苔"), ("none", "无苔"), ("moist", "润苔"), ("dry", "燥苔"))
PULSE = _opts(("floating", "浮脉"), ("deep", "沉脉"), ("slow", "迟脉"), ("rapid", "数脉"), ("weak", "虚脉"),
              ("forceful", "实脉"), ("slippery", "滑脉"), ("choppy", "涩脉"), ("wiry", "弦脉"), ("tight", "紧脉"),
              ("thready", "细脉"), ("soggy", "濡脉"), ("surging", "洪脉"))
CONSTITUTION = _opts(("balanced", "平和质"), ("qi_deficiency", "气虚质"), ("yang_deficiency", "阳虚质"),
                     ("yin_deficiency", "阴虚质"), ("phlegm_dampness", "痰湿质"), ("damp_heat", "湿热质"),
                     ("blood_stasis", "血瘀质"), ("qi_stagnation", "气郁质"), ("special", "特禀质"))

BUILTIN_TEMPLATES: list[dict[str, Any]] = [
    {"code": "tcm_four_exams", "name": "中医四诊", "kind": "tcm", "definition": {"sections": [
        {"key": "inspection", "title": "望诊", "fields": [
            {"key": "complexion", "label": "面色", "type": "single_select", "options": _opts(
                ("normal", "红润有泽"), ("pale", "㿠白"), ("sallow", "萎黄"), ("red", "面红"), ("dark", "晦暗"))},
            {"key": "tongue_body", "label": "舌质", "type": "multi_select", "required": True, "options": TONGUE_BODY},
            {"key": "tongue_coating", "label": "舌苔", "type": "multi_select", "required": True,
             "options": TONGUE_COATING},
            {"key": "tongue_photo", "label": "舌象照片", "type": "image"}]},
        {"key": "auscultation", "title": "闻诊", "fields": [
            {"key": "voice_breath", "label": "声音气味", "type": "text", "max_length": 500}]},
        {"key": "inquiry", "title": "问诊", "fields": [
            {"key": "chief_complaint", "label": "主诉", "type": "text", "required": True, "max_length": 500},
            {"key": "sleep", "label": "睡眠", "type": "single_select", "options": _opts(
                ("good", "良好"), ("difficulty_falling", "入睡困难"), ("dream_disturbed", "多梦易醒"),
                ("insomnia", "失眠"))},
            {"key": "appetite", "label": "饮食", "type": "single_select", "options": _opts(
                ("normal", "正常"), ("poor", "纳差"), ("excessive", "多食易饥"))}]},
        {"key": "palpation", "title": "切诊", "fields": [
            {"key": "pulse", "label": "脉象", "type": "multi_select", "required": True, "options": PULSE},
            {"key": "pulse_rate", "label": "脉率", "type": "number", "unit": "次/分", "min": 30, "max": 220}]},
        {"key": "assessment", "title": "辨证", "fields": [
            {"key": "constitution", "label": "体质", "type": "multi_select", "options": CONSTITUTION},
            {"key": "pattern", "label": "证型", "type": "text", "max_length": 200},
            {"key": "treatment_advice", "label": "调理建议", "type": "text", "max_length": 2000},
            {"key": "clinician_remark", "label": "医师备注（仅员工可见）", "type": "text", "max_length": 1000,
             "staff_only": True}]}]}},
    {"code": "pain_vas", "name": "疼痛评分（VAS）", "kind": "pain", "definition": {"sections": [
        {"key": "pain", "title": "疼痛评估", "fields": [
            {"key": "regions", "label": "疼痛部位", "type": "body_region", "required": True},
            {"key": "vas", "label": "VAS评分", "type": "scale", "min": 0, "max": 10, "required": True,
             "help": "0 无痛，10 难以忍受的剧痛"},
            {"key": "character", "label": "疼痛性质", "type": "multi_select", "options": _opts(
                ("aching", "酸痛"), ("distending", "胀痛"), ("stabbing", "刺痛"), ("cold", "冷痛"),
                ("burning", "灼痛"), ("dull", "隐痛"))},
            {"key": "onset_date", "label": "起病日期", "type": "date"},
            {"key": "clinician_remark", "label": "治疗师备注（仅员工可见）", "type": "text", "max_length": 1000,
             "staff_only": True}]}]}},
    {"code": "aesthetic_skin", "name": "医美皮肤评估", "kind": "aesthetics", "definition": {"sections": [
        {"key": "skin", "title": "皮肤状况", "fields": [
            {"key": "skin_type", "label": "肤质", "type": "single_select", "required": True, "options": _opts(
                ("dry", "干性"), ("oily", "油性"), ("combination", "混合性"), ("normal", "中性"),
                ("sensitive", "敏感性"))},
            {"key": "fitzpatrick", "label": "Fitzpatrick分型", "type": "single_select", "options": _opts(
                ("i", "I型"), ("ii", "II型"), ("iii", "III型"), ("iv", "IV型"), ("v", "V型"), ("vi", "VI型"))},
            {"key": "concerns", "label": "皮肤问题", "type": "multi_select", "required": True, "options": _opts(
                ("acne", "痤疮"), ("pigmentation", "色斑"), ("melasma", "黄褐斑"), ("wrinkles", "皱纹"),
                ("laxity", "松弛"), ("redness", "泛红"), ("enlarged_pores", "毛孔粗大"), ("dullness", "暗沉"))},
            {"key": "areas", "label": "评估部位", "type": "body_region"},
            {"key": "hydration", "label": "水分（%）", "type": "number", "unit": "%", "min": 0, "max": 100},
            {"key": "photo_front", "label": "正面照片", "type": "image"}]},
        {"key": "contraindications", "title": "禁忌筛查", "fields": [
            {"key": "pregnant", "label": "妊娠或哺乳期", "type": "boolean", "required": True},
            {"key": "recent_isotretinoin", "label": "半年内服用异维A酸", "type": "boolean"},
            {"key": "allergies", "label": "过敏史", "type": "boolean", "required": True},
            {"key": "allergy_detail", "label": "过敏详情", "type": "text", "required": True, "max_length": 500,
             "shown_if": {"field": "allergies", "equals": True}}]},
        {"key": "internal", "title": "内部备注", "fields": [
            {"key": "clinician_remark", "label": "医生备注（仅员工可见）", "type": "text", "max_length": 1000,
             "staff_only": True}]}]}},
    {"code": "intake_questionnaire", "name": "初诊问卷", "kind": "intake", "definition": {"sections": [
        {"key": "basics", "title": "基本情况", "fields": [
            {"key": "visit_reason", "label": "就诊原因", "type": "text", "required": True, "max_length": 1000},
            {"key": "height", "label": "身高", "type": "number", "unit": "cm", "min": 40, "max": 250},
            {"key": "weight", "label": "体重", "type": "number", "unit": "kg", "min": 2, "max": 300}]},
        {"key": "history", "title": "既往史", "fields": [
            {"key": "chronic_conditions", "label": "慢性病", "type": "multi_select", "options": _opts(
                ("hypertension", "高血压"), ("diabetes", "糖尿病"), ("heart_disease", "心脏病"),
                ("osteoporosis", "骨质疏松"), ("none", "无"))},
            {"key": "surgery_history", "label": "手术史", "type": "boolean", "required": True},
            {"key": "surgery_detail", "label": "手术详情", "type": "text", "max_length": 500, "required": True,
             "shown_if": {"field": "surgery_history", "equals": True}},
            {"key": "drug_allergy", "label": "药物过敏", "type": "text", "max_length": 500}]},
        {"key": "consent", "title": "确认", "fields": [
            {"key": "patient_signature", "label": "患者签名", "type": "signature", "required": True}]}]}},
    {"code": "post_treatment_check", "name": "治疗后检查", "kind": "follow_up", "definition": {"sections": [
        {"key": "check", "title": "治疗后反应", "fields": [
            {"key": "reaction", "label": "治疗反应", "type": "single_select", "required": True, "options": _opts(
                ("none", "无不适"), ("mild_soreness", "轻微酸痛"), ("redness", "局部发红"),
                ("bruising", "瘀青"), ("dizziness", "头晕"), ("other", "其他"))},
            {"key": "reaction_detail", "label": "反应描述", "type": "text", "required": True, "max_length": 500,
             "shown_if": {"field": "reaction", "any_of": ["bruising", "dizziness", "other"]}},
            {"key": "vas_after", "label": "治疗后VAS", "type": "scale", "min": 0, "max": 10},
            {"key": "next_visit_advice", "label": "下次治疗建议", "type": "text", "max_length": 500},
            {"key": "clinician_remark", "label": "治疗师备注（仅员工可见）", "type": "text", "max_length": 500,
             "staff_only": True}]}]}},
]
