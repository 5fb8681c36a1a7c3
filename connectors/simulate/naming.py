"""Vocabulary of the synthetic network: places, names, header styles. All of it is synthetic.

Every character here is GBK-encodable (tests check it), so any generated value can be written to a
GBK file. Pools are ordered by how common the item is; weights come from `rng.weights_zipf` unless
given explicitly.
"""

from __future__ import annotations

CITY = "重庆市"
CITY_SHORT = "重庆"

# (6-digit code, name, relative population weight, core urban district).
# Listed in the order small networks take them (core districts first, 渝中区 first).
DISTRICTS: tuple[tuple[str, str, float, bool], ...] = (
    ("500103", "渝中区", 6, True),
    ("500105", "江北区", 8, True),
    ("500108", "南岸区", 8, True),
    ("500106", "沙坪坝区", 9, True),
    ("500107", "九龙坡区", 10, True),
    ("500112", "渝北区", 12, True),
    ("500104", "大渡口区", 3, True),
    ("500113", "巴南区", 7, True),
    ("500109", "北碚区", 6, True),
    ("500116", "江津区", 6, False),
    ("500117", "合川区", 6, False),
    ("500118", "永川区", 5, False),
    ("500154", "开州区", 5, False),
    ("500110", "綦江区", 4, False),
    ("500111", "大足区", 4, False),
    ("500115", "长寿区", 4, False),
    ("500120", "璧山区", 4, False),
    ("500235", "云阳县", 4, False),
    ("500236", "奉节县", 4, False),
    ("500114", "黔江区", 3, False),
    ("500119", "南川区", 3, False),
    ("500151", "铜梁区", 3, False),
    ("500152", "潼南区", 3, False),
    ("500153", "荣昌区", 3, False),
    ("500155", "梁平区", 3, False),
    ("500230", "丰都县", 3, False),
    ("500231", "垫江县", 3, False),
    ("500233", "忠县", 3, False),
    ("500156", "武隆区", 2, False),
    ("500237", "巫山县", 2, False),
    ("500238", "巫溪县", 2, False),
    ("500240", "石柱土家族自治县", 2, False),
    ("500241", "秀山土家族苗族自治县", 2, False),
    ("500242", "酉阳土家族苗族自治县", 2, False),
    ("500243", "彭水苗族土家族自治县", 2, False),
    ("500229", "城口县", 1, False),
)

# Well-known township names used first in some core districts (flavour only).
KNOWN_TOWNSHIPS: dict[str, tuple[str, ...]] = {
    "500103": ("解放碑", "朝天门", "七星岗", "两路口", "上清寺", "菜园坝", "大溪沟", "南纪门",
               "化龙桥", "石油路", "大坪"),
    "500105": ("观音桥", "华新街", "五里店", "大石坝", "寸滩", "石马河"),
    "500108": ("南坪", "弹子石", "铜元局", "海棠溪", "龙门浩", "花园路"),
    "500106": ("小龙坎", "磁器口", "天星桥", "渝碚路", "石井坡", "井口"),
    "500107": ("杨家坪", "石桥铺", "黄桷坪", "谢家湾", "石坪桥", "渝州路"),
    "500112": ("两路", "龙溪", "双龙湖", "回兴", "龙山", "仙桃"),
}

# Place-name stems: first and second characters, combined into unique two-character stems.
PLACE_FIRST = "龙凤石桥江河山新华南北东西天白黄杨柳青金玉马鹿狮虎云花桃李梨松竹梅兴太平安宝双三九高清回长大小红沙铜铁观望朝凉古灵福寿永"
PLACE_SECOND = "溪湾坝坪岗沟门桥山口滩场坡园寺庙塘池湖林岭峰岩台堡关渡河田垭碑井店坊冲阁嘴"

ROAD_STEMS = (
    "民族", "民生", "民权", "中山", "人民", "建设", "解放", "和平", "新华", "文化", "胜利", "兴隆",
    "长江", "嘉陵", "滨江", "临江", "沧白", "五一", "青年", "八一", "邹容", "中华", "健康", "学府",
    "科园", "金开", "红锦", "松石", "洪湖", "龙华", "渝州", "石桥", "朝阳", "光明", "幸福", "团结",
    "向阳", "东风", "友谊", "振兴", "银杏", "桂花", "翠柏", "天星", "金山", "南华", "北城", "西郊",
)
ROAD_SUFFIXES = ("路", "路", "路", "街", "大道", "支路", "巷")

# Surnames with rough national frequencies (percent). Compound surnames are rare but present.
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.12), ("李", 7.00), ("张", 6.74), ("刘", 5.10), ("陈", 4.61), ("杨", 3.22), ("黄", 2.45),
    ("赵", 2.29), ("吴", 2.05), ("周", 1.98), ("徐", 1.45), ("孙", 1.38), ("马", 1.29), ("朱", 1.28),
    ("胡", 1.16), ("郭", 1.15), ("何", 1.03), ("林", 0.97), ("高", 0.99), ("罗", 0.92), ("郑", 0.78),
    ("梁", 0.68), ("谢", 0.62), ("宋", 0.59), ("唐", 0.57), ("许", 0.53), ("韩", 0.52), ("冯", 0.51),
    ("邓", 0.51), ("曹", 0.49), ("彭", 0.47), ("曾", 0.46), ("肖", 0.45), ("田", 0.44), ("董", 0.44),
    ("袁", 0.42), ("潘", 0.41), ("于", 0.40), ("蒋", 0.40), ("蔡", 0.39), ("余", 0.39), ("杜", 0.38),
    ("叶", 0.37), ("程", 0.37), ("苏", 0.36), ("魏", 0.35), ("吕", 0.34), ("丁", 0.33), ("任", 0.32),
    ("沈", 0.31), ("姚", 0.30), ("卢", 0.30), ("姜", 0.29), ("崔", 0.28), ("钟", 0.28), ("谭", 0.27),
    ("陆", 0.26), ("汪", 0.26), ("范", 0.25), ("金", 0.25), ("石", 0.24), ("廖", 0.24), ("贾", 0.23),
    ("夏", 0.23), ("韦", 0.22), ("付", 0.22), ("方", 0.22), ("白", 0.21), ("邹", 0.21), ("孟", 0.20),
    ("熊", 0.20), ("秦", 0.19), ("邱", 0.19), ("江", 0.19), ("尹", 0.18), ("薛", 0.18), ("闫", 0.17),
    ("段", 0.17), ("雷", 0.17), ("侯", 0.16), ("龙", 0.16), ("史", 0.16), ("陶", 0.15), ("黎", 0.15),
    ("贺", 0.15), ("顾", 0.15), ("毛", 0.15), ("郝", 0.14), ("龚", 0.14), ("邵", 0.14), ("万", 0.14),
    ("钱", 0.14), ("覃", 0.13), ("武", 0.13), ("戴", 0.13), ("向", 0.13), ("冉", 0.10), ("牟", 0.08),
    ("欧阳", 0.05), ("司马", 0.01), ("上官", 0.01), ("诸葛", 0.01),
)

# Given names. "old" pools for people born before 1975, "young" for the rest.
MALE_SINGLE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳亮成峰毅剑锋博轩睿"
FEMALE_SINGLE = "芳娜敏静丽艳娟霞燕玲英丹萍红婷雪琳颖倩洁莉琴云莹梅慧晶蓉露瑶欣悦琪雯蕾兰凤"
OLD_MALE_1 = "建国志德永明文光卫军春海金长振庆世学家小"
OLD_MALE_2 = "国华军明平强林生福荣兵民忠伟成清良富贵山东才祥"
OLD_FEMALE_1 = "秀桂玉淑春美金小丽红素凤海晓翠"
OLD_FEMALE_2 = "英兰珍芳华梅琴莲芬凤荣霞云萍秀娥敏燕"
YOUNG_MALE_1 = "子梓浩宇俊一博睿思嘉天明家志皓泽晨鑫雨文"
YOUNG_MALE_2 = "轩涵宇然辰泽宸豪杰阳航凯睿博铭浩鑫瑞哲洋"
YOUNG_FEMALE_1 = "欣雨诗佳思梓子若语可紫一嘉晓梦雅静心"
YOUNG_FEMALE_2 = "怡涵萱琪瑶彤妍悦萌诺菲雯婷欣琳茜蕾洁颖"

# Homophone typing errors (same toneless pinyin, as a pinyin input method offers them).
HOMOPHONES: dict[str, str] = {
    "伟": "玮炜维薇唯", "丽": "莉俪立利力", "莉": "丽俪利立", "静": "晶婧靖菁", "晶": "静婧菁京",
    "婧": "静晶靖", "敏": "民闵", "芳": "方", "娜": "纳", "艳": "燕彦妍雁", "燕": "艳雁彦妍",
    "娟": "鹃涓", "霞": "侠", "玲": "凌伶龄灵铃", "琳": "林霖麟", "林": "琳霖麟", "英": "瑛莹颖鹰",
    "莹": "英瑛颖滢", "颖": "英莹瑛", "婷": "亭庭廷", "红": "宏鸿虹洪", "宏": "红鸿洪弘",
    "华": "桦骅", "军": "俊君钧均", "俊": "军骏峻君", "杰": "洁", "洁": "杰", "涛": "韬滔",
    "斌": "彬宾滨", "明": "铭鸣", "刚": "钢纲", "辉": "晖慧惠", "慧": "惠辉晖", "鹏": "朋彭",
    "飞": "菲斐霏", "波": "博", "博": "波", "宇": "雨语玉羽瑜", "雨": "宇语玉羽", "浩": "皓昊颢",
    "帆": "凡", "宁": "凝", "龙": "隆", "阳": "洋扬杨", "峰": "锋枫丰", "锋": "峰枫丰", "亮": "良",
    "成": "诚程承", "国": "帼", "强": "蔷", "磊": "蕾雷", "蕾": "磊雷", "云": "芸", "萍": "平苹",
    "平": "萍", "丹": "单", "琴": "勤芹", "梅": "玫美", "蓉": "荣容", "荣": "蓉容融", "瑶": "遥尧",
    "欣": "新昕馨鑫心", "新": "欣昕馨鑫", "鑫": "新欣昕馨", "悦": "月越跃", "琪": "琦祺奇淇",
    "雯": "文", "文": "雯", "兰": "岚澜", "凤": "峰枫", "健": "建剑坚", "建": "健剑坚", "志": "智",
    "春": "纯淳", "永": "勇咏", "勇": "永咏", "轩": "萱宣璇", "萱": "轩宣璇", "涵": "晗寒含韩",
    "怡": "仪宜逸艺", "彤": "桐童", "秀": "琇绣", "珍": "真贞", "桂": "贵", "玉": "宇钰毓羽",
    "睿": "瑞锐蕊", "晓": "小筱孝", "思": "丝斯", "佳": "嘉家", "嘉": "佳家", "泽": "则",
    "晨": "辰臣", "辰": "晨臣", "倩": "茜", "凯": "恺铠楷", "旭": "序", "梦": "孟", "毅": "艺义易益逸",
    "东": "冬栋", "德": "得", "立": "丽力利莉", "剑": "健建坚", "兵": "冰", "庆": "青清卿晴",
}

# Birth-place area codes other than the city's districts (ID numbers keep the birth place).
OTHER_BIRTH_AREAS = (
    "510104", "510107", "511302", "510502", "511102", "520102", "520302", "420106", "422801",
    "430102", "610113", "530102", "110105", "310104", "440106", "440305", "330106", "320106",
    "370102", "410105", "511623", "511602", "511902", "511702",
)
# Codes the city's districts had before 1997 (under Sichuan), used for some older people.
OLD_CITY_BIRTH_AREAS = (
    "510202", "510203", "510211", "510212", "510213", "510214", "510215", "510221", "510222",
    "510223", "510224", "510225",
)

# GB/T 2260 recodings of the city's districts: 15-digit IDs issued before 1997 kept the Sichuan-era
# code, which the 18-digit upgrade (and the person's current ID) replaced. (old code, current code,
# year of the change that produced the current code, note). Kept here rather than read from
# entity_resolution/defaults/region_changes.csv so the simulator never depends on the resolver's
# table at import time; the two are meant to agree on these rows.
REGION_RECODINGS: tuple[tuple[str, str, int, str], ...] = (
    ("510202", "500103", 1997, "市中区 -> 渝中区"),
    ("510203", "500104", 1997, "大渡口区"),
    ("510211", "500105", 1997, "江北区"),
    ("510212", "500106", 1997, "沙坪坝区"),
    ("510213", "500107", 1997, "九龙坡区"),
    ("510214", "500108", 1997, "南岸区"),
    ("510215", "500109", 1997, "北碚区"),
    ("510216", "500110", 1997, "万盛区 (2011 并入綦江区 500110)"),
    ("510217", "500111", 1997, "双桥区 (2011 并入大足区 500111)"),
    ("510218", "500112", 1997, "渝北区"),
    ("510219", "500113", 1997, "巴南区"),
    ("510221", "500115", 2001, "长寿县 500221 -> 长寿区 500115"),
    ("510222", "500113", 1997, "巴县 -> 巴南区"),
)
OLD_TO_NEW_REGION: dict[str, str] = {old: new for old, new, _, _ in REGION_RECODINGS}
# Current code -> the old codes its 15-digit IDs carried (several for 巴南区: 巴县 before 1994).
NEW_TO_OLD_REGION: dict[str, tuple[str, ...]] = {}
for _old, _new, _, _ in REGION_RECODINGS:
    NEW_TO_OLD_REGION[_new] = NEW_TO_OLD_REGION.get(_new, ()) + (_old,)
del _old, _new
# Made-up Sichuan-era codes of districts that merged into a current one, documented nowhere (not in
# GB/T 2260, not in region_changes.csv): "region differs, the rest agrees" without a table to explain it.
UNDOCUMENTED_OLD_REGION: dict[str, str] = {
    new: f"5102{90 + i}" if i < 10 else f"5102{50 + i}"
    for i, new in enumerate(sorted(NEW_TO_OLD_REGION))
}

MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178", "180",
    "181", "182", "183", "184", "185", "186", "187", "188", "189", "191", "198", "199",
)

# Organisations.
ORG_STEM_CHARS = "华信达通宏远恒泰鑫源盛隆兴丰安康瑞祥嘉和佳美德诚金银博创智科汇鼎联合众荣新力天海中正明辉光"
ORG_INDUSTRIES = (
    "科技", "商贸", "建筑工程", "物业管理", "餐饮管理", "文化传媒", "信息技术", "机械设备", "医药",
    "物流", "房地产开发", "装饰工程", "教育咨询", "汽车服务", "环保科技", "农业开发", "电子",
    "贸易", "劳务", "酒店管理",
)
ORG_SUFFIXES = ("有限公司", "有限公司", "有限公司", "有限公司", "有限责任公司", "股份有限公司")
SHOP_KINDS = (
    "小面馆", "火锅店", "便利店", "五金店", "理发店", "超市", "茶楼", "副食店", "药房", "干洗店",
    "川菜馆", "水果店",
)

# Header styles. Canonical field -> station header, per style.
PERSON_HEADERS: dict[str, dict[str, str]] = {
    "zh": {
        "local_id": "人员编号", "name": "姓名", "sex": "性别", "birth_date": "出生日期",
        "id_number": "公民身份号码", "phone": "联系电话", "address": "现住址",
        "area_code": "行政区划代码", "source_updated_at": "更新时间",
    },
    "pinyin": {
        "local_id": "rybh", "name": "xm", "sex": "xb", "birth_date": "csrq", "id_number": "sfzh",
        "phone": "lxdh", "address": "xzz", "area_code": "xzqh", "source_updated_at": "gxsj",
    },
    "en": {
        "local_id": "person_id", "name": "name", "sex": "sex", "birth_date": "birth_date",
        "id_number": "id_no", "phone": "phone", "address": "address", "area_code": "area_code",
        "source_updated_at": "updated_at",
    },
}
ORG_HEADERS: dict[str, dict[str, str]] = {
    "zh": {
        "local_id": "单位编号", "name": "单位名称", "credit_code": "统一社会信用代码",
        "legal_rep": "法定代表人", "phone": "联系电话", "address": "单位地址",
        "area_code": "行政区划代码", "source_updated_at": "更新时间",
    },
    "pinyin": {
        "local_id": "dwbh", "name": "dwmc", "credit_code": "tyshxydm", "legal_rep": "fddbr",
        "phone": "lxdh", "address": "dwdz", "area_code": "xzqh", "source_updated_at": "gxsj",
    },
    "en": {
        "local_id": "org_id", "name": "org_name", "credit_code": "uscc", "legal_rep": "legal_rep",
        "phone": "phone", "address": "address", "area_code": "area_code",
        "source_updated_at": "updated_at",
    },
}
# Housing registers (实有房屋登记): one row per dwelling (a room), its owner or householder.
DWELLING_HEADERS: dict[str, dict[str, str]] = {
    "zh": {
        "local_id": "房屋编号", "address": "房屋地址", "owner_name": "房主姓名",
        "owner_id_number": "房主身份证号", "owner_phone": "联系电话", "use": "房屋用途",
        "occupants": "居住人数", "area_code": "行政区划代码", "source_updated_at": "更新时间",
    },
    "pinyin": {
        "local_id": "fwbh", "address": "fwdz", "owner_name": "fzxm", "owner_id_number": "fzsfzh",
        "owner_phone": "lxdh", "use": "fwyt", "occupants": "jzrs", "area_code": "xzqh",
        "source_updated_at": "gxsj",
    },
    "en": {
        "local_id": "house_id", "address": "address", "owner_name": "owner_name",
        "owner_id_number": "owner_id_no", "owner_phone": "phone", "use": "use", "occupants": "occupants",
        "area_code": "area_code", "source_updated_at": "updated_at",
    },
}
# Uses of a dwelling as registers write them.
DWELLING_USES = ("自住", "出租", "经营", "空置")
EXTRA_HEADER = {"zh": "备注", "pinyin": "bz", "en": "remark"}
PERSON_REMARKS = ("", "", "", "户主", "暂住", "租住", "已核实", "待核实", "外出务工", "")
ORG_REMARKS = ("", "", "已年检", "待核查", "歇业", "正常经营", "")
DWELLING_REMARKS = ("", "", "", "已核实", "待核实", "产权人外出", "租赁备案", "")

PERSON_TITLE = "{station}实有人口信息登记表（导出日期：{date}）"
ORG_TITLE = "{station}实有单位信息登记表（导出日期：{date}）"
PERSON_SHEETS = ("实有人口", "Sheet1", "人口信息")
ORG_SHEETS = ("实有单位", "Sheet1", "单位信息")
DWELLING_TITLE = "{station}实有房屋信息登记表（导出日期：{date}）"
DWELLING_SHEETS = ("实有房屋", "Sheet1", "房屋信息")

# Sex codes per style: (male, female).
SEX_CODES = {"zh": ("男", "女"), "num": ("1", "2"), "en": ("M", "F")}

# Date formats: (strftime-style format declared in stations.yaml, how it is rendered).
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日")


def all_text() -> str:
    """Every character the vocabulary can produce (for the GBK check in tests)."""
    parts = [CITY, PLACE_FIRST, PLACE_SECOND, MALE_SINGLE, FEMALE_SINGLE, OLD_MALE_1, OLD_MALE_2,
             OLD_FEMALE_1, OLD_FEMALE_2, YOUNG_MALE_1, YOUNG_MALE_2, YOUNG_FEMALE_1, YOUNG_FEMALE_2,
             ORG_STEM_CHARS, PERSON_TITLE, ORG_TITLE, "街道镇乡社区村组号栋单元室楼附派出所"]
    parts += [d[1] for d in DISTRICTS]
    parts += [n for names in KNOWN_TOWNSHIPS.values() for n in names]
    parts += list(ROAD_STEMS) + list(ROAD_SUFFIXES) + [s for s, _ in SURNAMES]
    parts += list(HOMOPHONES) + list(HOMOPHONES.values())
    parts += list(ORG_INDUSTRIES) + list(ORG_SUFFIXES) + list(SHOP_KINDS)
    parts += list(PERSON_REMARKS) + list(ORG_REMARKS) + list(PERSON_SHEETS) + list(ORG_SHEETS)
    parts += list(DWELLING_REMARKS) + list(DWELLING_SHEETS) + list(DWELLING_USES) + [DWELLING_TITLE]
    parts += ["幢号楼", "一二三四五六七八九十"]  # the address variants of housing registers
    for h in (PERSON_HEADERS, ORG_HEADERS, DWELLING_HEADERS):
        parts += [v for m in h.values() for v in m.values()]
    parts += list(EXTRA_HEADER.values()) + [c for pair in SEX_CODES.values() for c in pair]
    parts += list(DATE_FORMATS) + [note for *_, note in REGION_RECODINGS]
    return "".join(parts)
